"""udrl-distill demo: steer the distilled student with reward commands, compare it with its teacher,
plot achieved reward against the command, and collect blind ratings.

Run ``python app.py`` (port 7860; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import time  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from udrl import rewards  # noqa: E402
from udrl.config import LENGTH_COMMAND_RANGE, LENGTH_GRID, TEACHER_TEMPERATURE, TEACHER_TOP_P  # noqa: E402
from udrl.demo import annotate  # noqa: E402
from udrl.demo.inputs import (  # noqa: E402
    GUIDANCE_RANGE, MAX_INTENT_CHARS, MAX_SAMPLES, PENALTY_RANGE, InputError, parse_request,
)
from udrl.evaluate import sweep_student  # noqa: E402
from udrl.plots import length_figure, relevance_figure  # noqa: E402
from udrl.demo.service import ModelUnavailable, Models  # noqa: E402
from udrl.tasks import TASK_NAMES, TASKS  # noqa: E402

MODELS = Models()
annotate.use(MODELS)  # the Annotate tab (udrl/demo/annotate.py) samples these models
TABLE_HEADERS = ["#", "output", "relevance", "length", "novelty"]


def _fail(err: Exception) -> gr.Error:
    return gr.Error(str(err), title="Cannot run this request")


def _request(intent, task, relevance, length, n, seed, temperature=TEACHER_TEMPERATURE, top_p=TEACHER_TOP_P, guidance=None, tuned=True,
             penalty=None, word_guard=False):
    try:
        student = MODELS.student
        ranges = student.encoding.relevance_range
    except ModelUnavailable:
        ranges = None
    try:
        return parse_request(intent, task, relevance, length, n, seed, temperature, top_p, guidance, tuned, penalty,
                             word_guard, tasks=list(TASK_NAMES), relevance_range=ranges)
    except InputError as err:
        raise _fail(err) from None


def _scored_rows(intent: str, texts: list[str]) -> tuple[list[list], dict]:
    scores = rewards.score([intent] * len(texts), texts)
    rows = [[i + 1, t, s["relevance"], s["length"], s["novelty"]] for i, (t, s) in enumerate(zip(texts, scores))]
    mean = {k: float(np.mean([s[k] for s in scores])) for k in ("relevance", "length", "novelty")}
    mean.update({f"{k}_std": float(np.std([s[k] for s in scores])) for k in ("relevance", "length")})
    return rows, mean


def run_student(req) -> tuple[list[list], dict]:
    try:
        student = MODELS.student
    except ModelUnavailable as err:
        raise _fail(err) from None
    with MODELS.student_lock:
        started = time.perf_counter()
        sampling = {} if req.tuned_sampling else {"temperature": req.temperature, "top_p": req.top_p,
                                                   "guidance_scale": req.guidance_scale,
                                                   "repetition_penalty": req.repetition_penalty}
        outs = student.generate([req.intent], req.task, relevance=req.relevance, length=req.length, n=req.n,
                                seed=req.seed, word_guard=req.word_guard, **sampling)[0]
        elapsed = time.perf_counter() - started
    rows, mean = _scored_rows(req.intent, [o.text for o in outs])
    tokens = sum(o.tokens for o in outs)
    return rows, {**mean, "latency_ms": elapsed * 1000 / req.n, "tokens_per_s": tokens / elapsed,
                  "command": outs[0].command, "sampling": outs[0].sampling}


def run_teacher(req) -> tuple[list[list], dict]:
    teacher = MODELS.teacher  # raises ModelUnavailable with the reason
    with MODELS.teacher_lock:
        started = time.perf_counter()
        outs = teacher.generate([req.intent], req.task, n=req.n, seed=req.seed, temperature=req.temperature,
                                top_p=req.top_p)[0]
        elapsed = time.perf_counter() - started
    rows, mean = _scored_rows(req.intent, [o.text for o in outs])
    tokens = sum(o.completion_tokens for o in outs)
    return rows, {**mean, "latency_ms": elapsed * 1000 / req.n, "tokens_per_s": tokens / elapsed}


def _side_md(name: str, m: dict | None) -> str:
    if m is None:
        return f"**{name}**: no output"
    return (f"**{name}**: relevance {m['relevance']:.3f} · length {m['length']:.1f} words · novelty "
            f"{m['novelty']:.2f} · {m['latency_ms']:.0f} ms per sample · {m['tokens_per_s']:.0f} tokens/s")


def _notes_md(req) -> str:
    return "".join(f"\n\nNote: {note}" for note in req.notes)


def _sampling_md(req, m: dict) -> str:
    s = m["sampling"]
    source = "the checkpoint's for this task" if req.tuned_sampling else "set by hand"
    return (f"student sampling ({source}): guidance {s['guidance_scale']:g}, temperature {s['temperature']:g}, "
            f"top-p {s['top_p']:g}, repetition penalty {s['repetition_penalty']:g}, sibling penalty "
            f"{s.get('sibling_penalty', 1.0):g}"
            + (", word guard on" if s.get("word_guard") else ""))


def steer(intent, task, relevance, length, n, seed, temperature=TEACHER_TEMPERATURE, top_p=TEACHER_TOP_P, guidance=1.0, tuned=True,
          penalty=1.0, word_guard=False):
    """Student only, for the sliders: outputs and their rewards under the chosen command."""
    req = _request(intent, task, relevance, length, n, seed, temperature, top_p, guidance, tuned, penalty, word_guard)
    rows, m = run_student(req)
    cmd = m["command"]
    sent = "" if cmd["length_token"] == cmd["length"] else f" (sent as length token {cmd['length_token']})"
    # commands within one relevance bin send the model the same token: say which, so a step that changes
    # little is explained
    token = f" (relevance token {cmd['relevance_token'] + 1} of {MODELS.student.encoding.relevance_bins})"
    summary = (_side_md("Student", m) + f"\n\ncommand: relevance {cmd['relevance']:.3f}{token}, length "
               f"{cmd['length']}{sent}; "
               + _sampling_md(req, m) + _notes_md(req))
    return rows, summary


def compare(intent, task, relevance, length, n, seed, temperature=TEACHER_TEMPERATURE, top_p=TEACHER_TOP_P, guidance=1.0, tuned=True,
            penalty=1.0, word_guard=False):
    """Teacher and student side by side on one intent, with rewards, latency and the speed-up."""
    req = _request(intent, task, relevance, length, n, seed, temperature, top_p, guidance, tuned, penalty, word_guard)
    s_rows, s = run_student(req)
    try:
        t_rows, t = run_teacher(req)
        teacher_note = ""
    except ModelUnavailable as err:
        t_rows, t, teacher_note = [], None, f"\n\n{err}"
    lines = [_side_md("Teacher", t) + teacher_note, _side_md("Student", s)]
    if t is not None:
        lines.append(f"**Student speed-up**: {t['latency_ms'] / max(s['latency_ms'], 1e-6):.1f}x faster per "
                     f"sample · relevance {s['relevance'] - t['relevance']:+.3f} vs teacher")
    lines.append(f"teacher sampling: temperature {req.temperature:g}, top-p {req.top_p:g}; " + _sampling_md(req, s))
    return t_rows, s_rows, "\n\n".join(lines) + _notes_md(req)


def sweep(intent, task, n, seed, progress=gr.Progress()):
    """Achieved relevance and length of the student over its command ranges, for one intent (the sweep
    ``python -m udrl evaluate`` runs, on one intent)."""
    try:
        student = MODELS.student
    except ModelUnavailable as err:
        raise _fail(err) from None
    req = _request(intent, task, None, student.encoding.length_median.get(task, 20), n, seed)
    rel_commands = student.encoding.relevance_steps(req.task)
    steps = len(rel_commands) + len(LENGTH_GRID) + 1
    common = {"samples": req.n, "seed": req.seed}
    with MODELS.student_lock:
        rel_runs = sweep_student(student, [req.intent], req.task, rel_commands, length=req.length, **common,
                                 on_step=lambda i, c: progress(i / steps, desc=f"relevance command {c:.2f}"))
        len_runs = sweep_student(student, [req.intent], req.task, list(LENGTH_GRID), kind="length",
                                 relevance=student.encoding.relevance_range[req.task][1], **common,
                                 on_step=lambda i, c: progress((len(rel_commands) + i) / steps,
                                                               desc=f"length command {c}"))
    rel_sweep = [{"relevance_command": c, "relevance_mean": float(s["relevance"].mean()),
                  "relevance_std": float(s["relevance"].std())} for c, s in rel_runs]
    len_sweep = [{"length_command": c, "length_mean": float(s["length"].mean()),
                  "length_std": float(s["length"].std())} for c, s in len_runs]
    teacher_stats, note = None, ""
    progress((steps - 1) / steps, desc="teacher reference")
    try:
        _, t = run_teacher(req)
        teacher_stats = {"relevance_mean": t["relevance"], "relevance_std": t["relevance_std"],
                         "length_mean": t["length"], "length_std": t["length_std"]}
        note = f"Teacher band: mean of {req.n} teacher samples for this intent."
    except ModelUnavailable as err:
        note = f"No teacher band: {err}"
    return (relevance_figure(rel_sweep, teacher_stats, title="Achieved vs commanded relevance"),
            length_figure(len_sweep, teacher_stats, title="Achieved vs commanded length"), note + _notes_md(req))


def task_controls(task):
    """The sliders for a task: the relevance range its checkpoint supports (set to the top), and the
    checkpoint's guidance and repetition penalty for it (the starting point for setting them by hand)."""
    try:
        student = MODELS.student
        lo, hi = student.encoding.relevance_range[task]
        sampling = student.sampling_for(task)
    except (ModelUnavailable, KeyError):
        return gr.Slider(minimum=0.0, maximum=1.0, value=0.7), 1.0, 1.0
    return (gr.Slider(minimum=lo, maximum=hi, value=hi, step=0.005), sampling.guidance_scale,
            sampling.repetition_penalty)


def on_load(task):
    """Page load: start the models, show their status and set the sliders from the checkpoint."""
    MODELS.start()
    return (*status(), *task_controls(task))


def status():
    timer_active = not (MODELS.teacher_ready or MODELS.teacher_error)
    return MODELS.status_markdown(), gr.Timer(active=timer_active)


# -- layout ------------------------------------------------------------------------------------------
def build_demo() -> gr.Blocks:
    task_choices = [(TASKS[t].label, t) for t in TASK_NAMES]
    with gr.Blocks(title="udrl-distill: steer a distilled prompt writer") as demo:
        gr.Markdown("# udrl-distill\nA 135M-parameter teacher distilled into a small GPT-2 that takes the reward "
                    "it should achieve as an **input**: ask for more or less relevance, or a length.")
        status_md = gr.Markdown(MODELS.status_markdown())
        timer = gr.Timer(2.0)
        with gr.Tab("Steer & compare"):
            with gr.Row():
                with gr.Column(scale=2):
                    intent = gr.Textbox(label=f"Design intent (up to {MAX_INTENT_CHARS} characters)",
                                        value="lost cat poster", max_lines=2, elem_id="intent")
                    task = gr.Radio(task_choices, value="image_prompt", label="Task", elem_id="task")
                with gr.Column(scale=2):
                    relevance = gr.Slider(0.0, 1.0, value=0.7, step=0.005, label="Relevance command (cosine)",
                                          info="Higher asks for outputs closer to the intent", elem_id="relevance")
                    length = gr.Slider(*LENGTH_COMMAND_RANGE, value=25, step=1, label="Length command (words)",
                                       elem_id="length")
                    n = gr.Slider(1, MAX_SAMPLES, value=3, step=1, label="Samples")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    temperature = gr.Slider(0.0, 2.0, value=TEACHER_TEMPERATURE, step=0.05, label="Temperature")
                    top_p = gr.Slider(0.05, 1.0, value=TEACHER_TOP_P, step=0.01, label="Top-p")
                    tuned = gr.Checkbox(value=True, label="Student: the checkpoint's sampling for the task",
                                        info="Untick to sample the student with the values here too",
                                        elem_id="tuned")
                    guidance = gr.Slider(*GUIDANCE_RANGE, value=1.0, step=0.1, label="Command guidance (student)",
                                         info="Scales the difference the relevance command makes (1 = none)",
                                         elem_id="guidance")
                    penalty = gr.Slider(*PENALTY_RANGE, value=1.0, step=0.05, label="Repetition penalty (student)",
                                        info="Lowers the odds of tokens the output already holds (1 = none)",
                                        elem_id="penalty")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    word_guard = gr.Checkbox(value=True, label="Word guard (student)",
                                             info="Redraw tokens that would make a word neither common in English "
                                                  "nor in the intent, or repeat the word before; finish a subject word "
                                                  "once begun; do not end on an open phrase (\"for an\")",
                                             elem_id="word-guard")
            with gr.Row():
                generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                sweep_btn = gr.Button("Sweep commands", elem_id="sweep")
            summary = gr.Markdown(elem_id="summary")
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Teacher (SmolLM2-135M-Instruct)")
                    teacher_table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["number", "str", "number",
                                                                                 "number", "number"],
                                                 interactive=False, wrap=True, elem_id="teacher-out")
                with gr.Column():
                    gr.Markdown("### Student (distilled GPT-2)")
                    student_table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["number", "str", "number",
                                                                                 "number", "number"],
                                                 interactive=False, wrap=True, elem_id="student-out")
            gr.Markdown("### Reward vs command")
            sweep_note = gr.Markdown()
            with gr.Row():
                rel_plot = gr.Plot(label="Relevance", elem_id="relevance-plot")
                len_plot = gr.Plot(label="Length", elem_id="length-plot")
            gr.Examples([["lost cat poster", "image_prompt"], ["holiday sale", "headline"],
                         ["yoga retreat in the mountains", "search_queries"],
                         ["a llama wearing sunglasses", "image_prompt"], ["vintage typewriter repair", "headline"],
                         ["a giant squid", "search_queries"]], inputs=[intent, task])

        annotate.build_annotate_tab(task_choices)

        # events
        inputs = [intent, task, relevance, length, n, seed, temperature, top_p, guidance, tuned, penalty, word_guard]
        controls = [relevance, guidance, penalty]
        demo.load(on_load, task, [status_md, timer, *controls], api_visibility="private")
        timer.tick(status, outputs=[status_md, timer], api_visibility="private")
        task.change(task_controls, task, controls, api_visibility="private")
        generate_btn.click(compare, inputs, [teacher_table, student_table, summary], api_name="compare")
        relevance.release(steer, inputs, [student_table, summary], api_name="steer")
        length.release(steer, inputs, [student_table, summary], api_visibility="private")
        sweep_btn.click(sweep, [intent, task, n, seed], [rel_plot, len_plot, sweep_note], api_name="sweep")
    demo.queue(max_size=int(os.environ.get("UDRL_QUEUE_SIZE", 64)), default_concurrency_limit=2)
    return demo


demo = build_demo()

if __name__ == "__main__":
    MODELS.start()
    demo.launch()
