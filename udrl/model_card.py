"""The student checkpoint's model card (README.md with YAML metadata), written from measured files only.

``training.json`` (written by training), ``sampling.json`` (by ``tune``), ``metrics.json`` (by ``evaluate``)
and ``bench.json`` (by ``bench``) sit beside the weights; the card quotes whichever exist.
"""

from __future__ import annotations

import json
from pathlib import Path

from udrl.evaluate import LENGTH_GRID, format_difference
from udrl.sampling import LengthCalibration
from udrl.teacher import PROXY_PARAMETERS


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _stages(training: dict) -> list[dict]:
    """The training runs that made the checkpoint, first to last (``continued_from`` links them)."""
    stages = []
    while training:
        stages.insert(0, training)
        training = training.get("continued_from") or {}
    return stages


def _stage_line(stage: dict, number: int | None) -> str:
    cfg = stage.get("config", {})
    swapped = stage.get("augmented_records", 0)
    head = f"- stage {number}: " if number else "- "
    if stage.get("distilled_guidance"):
        scales = ", ".join(f"{t} {s:g}" for t, s in stage["distilled_guidance"].items())
        head += (f"guidance distillation (scales {scales}): its loss is the KL divergence per output token from "
                 "the stage before's guided distribution to the model's single pass; ")
    return (head + f"{stage['train_records']} training records"
            + (f" ({swapped} of them subject-swapped by `python -m udrl augment`)" if swapped else "")
            + f", {stage['heldout_records']} held-out (test intents); AdamW, lr {cfg.get('lr')}, batch "
            f"{cfg.get('batch_size')}, {cfg.get('epochs')} epochs"
            + (f" stopped at step {cfg['max_steps']}" if cfg.get("max_steps") else "")
            + f", cosine schedule, seed {cfg.get('seed')}"
            + (f", continued from `{cfg['init']}`" if cfg.get("init") else ""))


def _tune_commands(sampling: dict) -> list[str]:
    """The command that chose the settings, or each task's when they came from different runs."""
    commands = sampling.get("commands") or {}
    if len(set(commands.values())) > 1:
        return ["Commands:", "", *(f"- {task}: `{command}`" for task, command in commands.items())]
    return [f"Command: `{sampling.get('command', 'python -m udrl tune')}`"]


def write_model_card(directory: str | Path) -> Path:
    """(Re)write ``README.md`` of a checkpoint from its JSON records."""
    d = Path(directory)
    training, metrics, bench = _load(d / "training.json"), _load(d / "metrics.json"), _load(d / "bench.json")
    encoding, sampling = _load(d / "udrl.json"), _load(d / "sampling.json")
    cfg = training.get("config", {})
    params = training.get("parameters")
    size_mb = sum(f.stat().st_size for f in d.glob("*.safetensors")) / 1e6
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "license: apache-2.0",
        "tags: [gpt2, distillation, upside-down-rl, prompt-generation]",
        f"datasets: [{', '.join(p for p in (cfg.get('corpus', 'data/distill'), cfg.get('augmented')) if p)}]",
        "---",
        "",
        "# udrl-distill student",
        "",
        "A small GPT-2 distilled from SmolLM2-135M-Instruct (the offline teacher proxy) on design intents, "
        "steered with upside-down RL: the relevance and length it should achieve are *inputs*.",
        "",
        "Prompt format: `<|task:T|><|rel:B|><|len:N|>intent<|sep|>` then the output until `<|endoftext|>`. "
        "`udrl.json` holds the relevance bins per task and the supported command ranges.",
        "",
        "```python",
        "from udrl.student import load_student",
        "student = load_student('checkpoints/student')",
        "student.generate(['lost cat poster'], 'image_prompt', relevance=0.7, length=25, n=2, seed=0)",
        "```",
        "",
        "## Size",
        "",
    ]
    if params:
        lines += [f"- parameters: {params:,} ({PROXY_PARAMETERS / params:.0f}x fewer than the teacher's "
                  f"{PROXY_PARAMETERS:,})",
                  f"- weights: {size_mb:.1f} MB (safetensors, fp32)"]
    lines += ["", "## Training", ""]
    if training:
        arch = training.get("architecture") or cfg
        lines += [f"- architecture: {arch.get('n_layer')} layers, {arch.get('n_embd')} wide, "
                  f"{arch.get('n_head')} heads, vocabulary {arch.get('vocab_size')} (byte-level BPE)"]
        stages = _stages(training)
        for number, stage in enumerate(stages, 1):
            lines += [_stage_line(stage, number if len(stages) > 1 else None)]
        if len(stages) > 1:
            lines += ["- each later stage continued the one before (`train --init`) with its tokenizer and "
                      "command encoding"]
        lines += ["", "| stage | epoch | train loss | held-out loss |", "|---|---|---|---|"]
        lines += [f"| {number} | {h['epoch']} | {h['train_loss']} | {h['heldout_loss']} |"
                  for number, stage in enumerate(stages, 1) for h in stage["history"]]
    if encoding:
        lines += ["", "## Commands", "", "| task | relevance range | median length (words) |", "|---|---|---|"]
        lines += [f"| {t} | {r[0]} to {r[1]} | {encoding['length_median'][t]} |"
                  for t, r in encoding["relevance_range"].items()]
    if sampling:
        lines += ["", "## Sampling", ""]
        if training.get("distilled_guidance"):
            lines += ["Guidance is distilled into the weights (the last training stage): one pass per token draws "
                      "what the stage before drew from `log p(.|reference) + s * (log p(.|command) - "
                      "log p(.|reference))`, the reference being the opposite relevance command, so sampling "
                      "needs no second pass (guidance scale 1)."]
        else:
            lines += ["Each token is drawn from `log p(.|reference) + s * (log p(.|command) - log p(.|reference))`, "
                      "the reference being the opposite relevance command (classifier-free guidance; s = 1 is "
                      "plain sampling)."]
        lines += ["", f"Settings per task, chosen by measurement on {sampling.get('n_intents', '?')} intents that "
                      "the evaluation does not use:" if "trials" in sampling else
                  "Settings per task: the temperature and top-p of the stage before.", "",
                  *_tune_commands(sampling),
                  "", "| task | guidance scale | temperature | top-p | repetition penalty |", "|---|---|---|---|---|"]
        lines += [f"| {t} | {v['guidance_scale']:g} | {v['temperature']:g} | {v['top_p']:g} | "
                  f"{v.get('repetition_penalty', 1.0):g} |" for t, v in sampling["tasks"].items()]
        if sampling.get("length_calibration"):
            lines += ["", "Length calibration: a request for n words is sent as the length command that gave n words "
                          "on average in the same tuning run (measured per task at these settings).", "",
                      "| task | " + " | ".join(f"{n} words" for n in LENGTH_GRID) + " |",
                      "|---|" + "---|" * len(LENGTH_GRID)]
            for task, points in sampling["length_calibration"].items():
                curve = LengthCalibration.from_points(points)
                sent = [curve.token_for(n) for n in LENGTH_GRID]
                lines.append(f"| {task} | " + " | ".join(f"token {t}" for t in sent) + " |")
    if metrics:
        lines += ["", "## Evaluation (held-out test intents)", "",
                  f"Command: `{metrics.get('command', 'python -m udrl evaluate')}`", "",
                  "Length MAE: commands 8 to 40 within the task's supported length range; grid MAE: commands "
                  "8, 16, 24, 32, 40 for every task.", "",
                  "| task | spearman | pearson | length MAE | grid MAE | top-command relevance | teacher relevance "
                  "| top - teacher, 95 % CI over intents | top novelty | top diversity | teacher diversity |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for task, m in metrics.get("tasks", {}).items():
            teacher = m.get("teacher") or {}
            lines.append(f"| {task} | {m['spearman']:.3f} | {m['pearson']:.3f} | {m['length_mae']:.2f} | "
                         f"{m['length_mae_grid']:.2f} | "
                         f"{m['top']['relevance_mean']:.3f} | {teacher.get('relevance_mean', float('nan')):.3f} | "
                         f"{format_difference(m.get('top_vs_teacher'))} | {m['top']['novelty_mean']:.3f} | "
                         f"{m['top']['diversity']:.3f} | "
                         f"{teacher.get('diversity', float('nan')):.3f} |")
    if bench:
        machine = f"{bench.get('cpu_count', 2)} CPU cores" + (f", {bench['cpu']}" if bench.get("cpu") else "")
        lines += ["", f"## Speed ({machine})", "", f"Command: `{bench.get('command', 'python -m udrl bench')}`",
                  "", f"- student p50 {bench['student']['p50_ms']:.1f} ms per prompt, "
                  f"{bench['student']['tokens_per_s']:.0f} tokens/s single-stream, "
                  f"{bench['student']['batch_tokens_per_s']:.0f} tokens/s at batch 32"
                  + (f" (without guidance: p50 {bench['student_unguided']['p50_ms']:.1f} ms, "
                     f"{bench['student_unguided']['tokens_per_s']:.0f} tokens/s single-stream, "
                     f"{bench['student_unguided']['batch_tokens_per_s']:.0f} at batch 32)"
                     if "student_unguided" in bench else "")]
        speedups = [f"{bench[key]:.1f}x ({name})" for key, name in (("speedup_vs_llamacpp", "llama.cpp"),
                                                                     ("speedup_vs_transformers", "transformers"))
                    if key in bench]  # a bench may leave a teacher backend out
        lines += [f"- speed-up over the teacher: {', '.join(speedups)}"] if speedups else []
    path = d / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
