"""Command sweeps on held-out intents: does the achieved reward follow the command, and how does the
student at its highest command compare with its teacher?"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap, pearsonr, spearmanr

from udrl import invocation, rewards
from udrl.config import (LENGTH_COMMAND_RANGE, LENGTH_GRID, TEACHER_TEMPERATURE, TEACHER_TOP_P,
                         EvaluateConfig, task_list)
from udrl.corpus import read_intents
from udrl.student.sampling import SAMPLING_FILE, read_sampling_record

LENGTH_MAE_RANGE = (LENGTH_GRID[0], LENGTH_GRID[-1])
# the goals the evaluation reports against (``tune`` measures its margins to the same bounds)
SPEARMAN_GOAL, PEARSON_GOAL, LENGTH_MAE_GOAL = 0.95, 0.6, 3.0
DIVERSITY_TOLERANCE = 0.10  # top-command diversity within 10 % of the teacher's
NOVELTY_GOAL = 0.5  # image_prompt at the top command: no copying the intent back
NON_WORD_TOLERANCE = 0.005  # non-word rate at most the teacher's + 0.5 points
SUBJECT_TOLERANCE = 0.05  # subject kept at least the teacher's - 5 points


def length_commands(student, task: str, steps: int = 5) -> list[int]:
    """Length commands over the task's supported range (5 % to 95 % of the corpus), plus the fixed grid."""
    lo, hi = student.encoding.length_range[task]
    low, high = LENGTH_COMMAND_RANGE
    own = {int(round(x)) for x in np.linspace(max(low, lo), min(high, max(hi, lo + 4)), steps)}
    return sorted(own | set(LENGTH_GRID))


def _finite(x: float) -> float:
    """Correlations of a constant series are undefined: reported as 0 (no control at all)."""
    return float(x) if np.isfinite(x) else 0.0


def _group_diversity(groups: list[list[str]]) -> float:
    """Mean distinct-2 over the samples of each intent."""
    return float(np.mean([rewards.diversity(g) for g in groups])) if groups else 0.0


def _diversity_beyond(intents: list[str], groups: list[list[str]]) -> float:
    """Distinct-2 of the word pairs that hold none of the intent's words, each intent's samples compared among
    themselves, pooled over intents: an intent whose outputs add few pairs to its subject weighs little."""
    counts = [rewards.distinct_pairs(g, beyond=i) for i, g in zip(intents, groups)]
    total = sum(t for _, t in counts)
    return sum(u for u, _ in counts) / total if total else 0.0


def _stats(intents: list[str], groups: list[list[str]]) -> dict:
    flat_intents = [i for i, g in zip(intents, groups) for _ in g]
    flat = [o for g in groups for o in g]
    rel = np.array(rewards.relevance(flat_intents, flat))
    lengths = np.array(rewards.length(flat))
    nov = np.array(rewards.novelty(flat_intents, flat))
    ends = np.cumsum([len(g) for g in groups])[:-1]
    by_intent = np.array([part.mean() if len(part) else np.nan for part in np.split(rel, ends)])
    return {"relevance": rel, "length": lengths, "novelty": nov, "diversity": _group_diversity(groups),
            "diversity_beyond_intent": _diversity_beyond(intents, groups),
            "non_word": np.array(rewards.non_word_rate(flat_intents, flat)),
            "subject_kept": np.array(rewards.subject_kept(flat_intents, flat), dtype=float),
            "stock": np.array(rewards.stock_phrases(flat_intents, flat), dtype=float),
            "n": len(flat), "relevance_by_intent": by_intent}


def _language(stats: dict) -> dict:
    """Non-word rate (share of words), subject kept and stock phrases (shares of outputs) of a scored run, and
    its diversity beyond the intent's words (:func:`udrl.rewards.diversity`)."""
    return {"non_word_rate": round(float(stats["non_word"].mean()), 4),
            "diversity_beyond_intent": round(stats["diversity_beyond_intent"], 4),
            "subject_kept": round(float(stats["subject_kept"].mean()), 4),
            "stock_phrases": round(float(stats["stock"].mean()), 4)}


def sweep_student(student, intents: list[str], task: str, commands: list[float], *, samples: int,
                  seed: int, length: int | None = None, kind: str = "relevance",
                  relevance: float | None = None, progress: bool = False, on_step=None,
                  **sampling) -> list[tuple[float, dict]]:
    """Student outputs scored for each command value (``kind`` = which command is swept); ``sampling``
    overrides the checkpoint's sampling settings (temperature, top_p, guidance_scale, repetition_penalty).
    ``on_step(i, command)`` is called before each command (the app's progress bar)."""
    from tqdm.auto import tqdm

    results = []
    for i, c in enumerate(tqdm(commands, desc=f"{task}: {kind} commands", leave=False, disable=not progress)):
        if on_step is not None:
            on_step(i, c)
        if kind == "relevance":
            outs = student.generate(intents, task, relevance=c, length=length, n=samples, seed=seed, **sampling)
        else:
            outs = student.generate(intents, task, relevance=relevance, length=c, n=samples, seed=seed, **sampling)
        stats = _stats(intents, [[o.text for o in g] for g in outs])
        results.append((c, {**stats, "length_token": outs[0][0].command["length_token"]}))
    return results


def relevance_control(student, intents: list[str], task: str, samples: int, seed: int, progress: bool = False,
                      **sampling) -> dict:
    """Sweep the relevance command at the task's median length: ``sweep``, ``spearman`` (commands vs
    mean relevance), ``pearson`` (per sample) and ``top`` (the highest command)."""
    rel_commands = student.encoding.relevance_steps(task)  # one per relevance token
    rel_runs = sweep_student(student, intents, task, rel_commands, samples=samples, seed=seed,
                             length=student.encoding.length_median[task], progress=progress, **sampling)
    sweep = [{"relevance_command": c, "relevance_mean": round(float(s["relevance"].mean()), 4),
              "relevance_std": round(float(s["relevance"].std()), 4),
              "length_mean": round(float(s["length"].mean()), 2),
              "novelty_mean": round(float(s["novelty"].mean()), 4), "diversity": round(s["diversity"], 4),
              "n": s["n"]} for c, s in rel_runs]
    spearman = _finite(spearmanr(rel_commands, [s["relevance_mean"] for s in sweep]).statistic)
    per_sample_cmd = np.concatenate([np.full(s["n"], c) for c, s in rel_runs])
    per_sample_rel = np.concatenate([s["relevance"] for _, s in rel_runs])
    pearson = _finite(pearsonr(per_sample_cmd, per_sample_rel).statistic)
    top_command, top = rel_runs[-1]
    return {"sweep": sweep, "spearman": round(spearman, 4), "pearson": round(pearson, 4),
            "top_relevance_by_intent": top["relevance_by_intent"],
            "top": {"relevance_command": top_command, "relevance_mean": round(float(top["relevance"].mean()), 4),
                    "novelty_mean": round(float(top["novelty"].mean()), 4), "diversity": round(top["diversity"], 4),
                    "length_mean": round(float(top["length"].mean()), 2), **_language(top)}}


def teacher_stats(teacher, intents: list[str], task: str, samples: int, seed: int) -> dict:
    """The teacher's mean rewards and diversity on the same intents, sampled as the app compares it."""
    return _teacher_run(teacher, intents, task, samples, seed)[0]


def _teacher_run(teacher, intents: list[str], task: str, samples: int, seed: int,
                 progress: bool = False) -> tuple[dict, np.ndarray]:
    """:func:`teacher_stats` and the teacher's mean relevance per intent."""
    from tqdm.auto import tqdm

    groups = []
    for start in tqdm(range(0, len(intents), 8), desc=f"{task}: teacher", leave=False, disable=not progress):
        # the seed of the whole list: a chunk starting at ``start`` samples as it would in one call
        groups += teacher.generate(intents[start : start + 8], task, n=samples, seed=seed + start * samples,
                                   temperature=TEACHER_TEMPERATURE, top_p=TEACHER_TOP_P)
    t = _stats(intents, [[o.text for o in g] for g in groups])
    return {
        "backend": teacher.backend, "model": teacher.model,
        "relevance_mean": round(float(t["relevance"].mean()), 4),
        "relevance_std": round(float(t["relevance"].std()), 4),
        "length_mean": round(float(t["length"].mean()), 2), "length_std": round(float(t["length"].std()), 2),
        "novelty_mean": round(float(t["novelty"].mean()), 4), "diversity": round(t["diversity"], 4),
        **_language(t), "n": t["n"],
    }, t["relevance_by_intent"]


def paired_difference(student: np.ndarray, teacher: np.ndarray, seed: int = 0) -> dict:
    """Mean per-intent relevance difference (student - teacher) with a 95 % bootstrap interval over
    intents: how far apart the two are, given how much the intents alone move a 40-intent mean."""
    diff = np.asarray(student) - np.asarray(teacher)
    diff = diff[np.isfinite(diff)]
    if len(diff) < 2:
        return {"mean": round(float(diff.mean()), 4) if len(diff) else None, "ci95": None, "n_intents": len(diff)}
    ci = bootstrap((diff,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                   rng=np.random.default_rng(seed)).confidence_interval
    return {"mean": round(float(diff.mean()), 4), "ci95": [round(float(ci.low), 4), round(float(ci.high), 4)],
            "n_intents": len(diff)}


def _supported(student, task: str, command: int) -> bool:
    """Whether a length command counts towards ``length_mae``: 8..40 and within the task's corpus 5 %..95 %."""
    lo, hi = student.encoding.length_range[task]
    return max(LENGTH_MAE_RANGE[0], lo) <= command <= min(LENGTH_MAE_RANGE[1], hi)


def length_control(student, intents: list[str], task: str, samples: int, seed: int,
                   commands: list[int] | None = None, progress: bool = False, **sampling) -> dict:
    """Sweep the length command at the task's top relevance command: ``length_sweep`` (with the token each
    request was sent as), ``length_mae`` (supported commands 8..40) and ``length_mae_grid`` (the fixed grid
    8, 16, 24, 32, 40, any task)."""
    commands = length_commands(student, task) if commands is None else commands
    len_runs = sweep_student(student, intents, task, commands, samples=samples, seed=seed, kind="length",
                             relevance=student.encoding.relevance_range[task][1], progress=progress, **sampling)
    length_sweep = [{"length_command": c, "length_token": s["length_token"],
                     "length_mean": round(float(s["length"].mean()), 2),
                     "length_std": round(float(s["length"].std()), 2),
                     "length_mae": round(float(np.abs(s["length"] - c).mean()), 2),
                     "relevance_mean": round(float(s["relevance"].mean()), 4), "n": s["n"]} for c, s in len_runs]
    supported = set(supported_length_commands(student, task))
    in_range = [np.abs(s["length"] - c) for c, s in len_runs if c in supported]
    grid = [np.abs(s["length"] - c) for c, s in len_runs if c in LENGTH_GRID]
    return {"length_sweep": length_sweep,
            "length_mae": round(float(np.concatenate(in_range).mean()), 3) if in_range else None,
            "length_mae_grid": round(float(np.concatenate(grid).mean()), 3) if grid else None,
            "length_range": student.encoding.length_range[task]}


def supported_length_commands(student, task: str) -> list[int]:
    """The commands of :func:`length_commands` that ``length_mae`` is measured on (for a task whose
    outputs are all shorter than 8 words: its shortest grid command)."""
    commands = length_commands(student, task)
    return [c for c in commands if _supported(student, task, c)] or [min(LENGTH_GRID)]


def evaluate_task(student, teacher, intents: list[str], task: str, samples: int, seed: int) -> dict:
    """The metrics of one task (see the module docstring of ``python -m udrl evaluate``)."""
    control = relevance_control(student, intents, task, samples, seed, progress=True)
    result = {
        "sampling": asdict(student.sampling_for(task)),
        "sweep": control["sweep"], "spearman": control["spearman"], "pearson": control["pearson"],
        **length_control(student, intents, task, samples, seed, progress=True),
        "top": control["top"], "teacher": None,
    }
    if teacher is not None:
        result["teacher"], by_intent = _teacher_run(teacher, intents, task, samples, seed, progress=True)
        result["top_vs_teacher"] = paired_difference(control["top_relevance_by_intent"], by_intent, seed)
    return result


def tuning_window(checkpoint: str, intents_file: str) -> tuple[int, int]:
    """(skip, count) of the intents of ``intents_file`` that ``tune`` chose the checkpoint's settings on."""
    tuned = read_sampling_record(checkpoint) or {}
    recorded = "skip" in tuned and "n_intents" in tuned and "intents" in tuned
    if not recorded or Path(tuned["intents"]).resolve() != Path(intents_file).resolve():
        raise ValueError(f"{checkpoint} was not tuned on {intents_file} (no such record in its {SAMPLING_FILE}): "
                         "there are no tuning intents to leave out")
    return int(tuned["skip"]), int(tuned["n_intents"])


def evaluate(cfg: EvaluateConfig) -> dict:
    """The ``evaluate`` stage: measure the checkpoint, write ``cfg.json`` (and ``cfg.report``), and return the
    result. A JSON written inside the checkpoint (its ``metrics.json``) refreshes its model card."""
    from udrl.cards import write_model_card

    result = evaluate_checkpoint(cfg.checkpoint, cfg.intents, task_list(cfg.tasks), samples=cfg.samples,
                                 limit=cfg.limit, seed=cfg.seed, teacher_backend=cfg.teacher, skip=cfg.skip,
                                 outside_tuning=cfg.outside_tuning, word_guard=cfg.word_guard)
    out = Path(cfg.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if cfg.report:
        write_report(result, cfg.report)
    if out.resolve().parent == Path(cfg.checkpoint).resolve():
        write_model_card(cfg.checkpoint)
    return result


def evaluate_checkpoint(checkpoint: str, intents_file: str, tasks: list[str], samples: int, limit: int | None,
                        seed: int, teacher_backend: str, skip: int = 0, outside_tuning: bool = False,
                        word_guard: bool = False) -> dict:
    """Evaluate a checkpoint on ``limit`` intents of a file after the first ``skip``; returns the
    JSON-ready result. ``outside_tuning`` first leaves out the intents ``tune`` measured the checkpoint's
    settings on (:func:`tuning_window`); ``word_guard`` samples the student with the word guard."""
    from udrl.student import check_checkpoint, load_student
    from udrl.teacher import load_teacher

    check_checkpoint(checkpoint)
    intents = read_intents(intents_file)
    left_out = tuning_window(checkpoint, intents_file) if outside_tuning else None
    if left_out:
        intents = intents[: left_out[0]] + intents[left_out[0] + left_out[1] :]
    intents = intents[skip : None if limit is None else skip + limit]
    if not intents:
        raise ValueError(f"no intents in {intents_file}" + (f" after skipping {skip}" if skip else ""))
    student = load_student(checkpoint).with_word_guard(word_guard)
    teacher = None if teacher_backend == "none" else load_teacher(teacher_backend)
    result = {"checkpoint": checkpoint, "intents": intents_file, "skip": skip, "n_intents": len(intents),
              "samples": samples, "seed": seed, "word_guard": word_guard,
              "command": invocation("evaluate", "udrl.evaluate.evaluate_checkpoint"),
              "parameters": student.parameters, "tasks": {}}
    if left_out:
        result["left_out"] = {"skip": left_out[0], "n_intents": left_out[1]}
    for task in tasks:
        result["tasks"][task] = evaluate_task(student, teacher, intents, task, samples, seed)
    return result


GOALS = (f"spearman >= {SPEARMAN_GOAL:g}, pearson >= {PEARSON_GOAL:g}, length MAE <= {LENGTH_MAE_GOAL:g}, "
         f"top relevance >= teacher's, non-word rate <= teacher's + {NON_WORD_TOLERANCE * 100:g} points, "
         f"subject kept >= teacher's - {SUBJECT_TOLERANCE * 100:g} points")


def summary_lines(result: dict) -> list[str]:
    nan = float("nan")
    lines = [f"{'task':<15} {'spearman':>8} {'pearson':>8} {'lenMAE':>7} {'gridMAE':>7} {'top rel':>8} "
             f"{'teacher':>8} {'top nov':>8} {'top div':>8} {'t div':>6} {'div+':>6} {'t div+':>6} {'nonword':>8} "
             f"{'t nonw':>7} "
             f"{'subject':>8} {'t subj':>7} {'stock':>6} {'t stock':>7}  top - teacher [95% CI]"]
    for task, m in result["tasks"].items():
        t, top = m["teacher"] or {}, m["top"]
        lines.append(f"{task:<15} {m['spearman']:>8.3f} {m['pearson']:>8.3f} {m['length_mae']:>7.2f} "
                     f"{m['length_mae_grid']:>7.2f} "
                     f"{top['relevance_mean']:>8.3f} {t.get('relevance_mean', nan):>8.3f} "
                     f"{top['novelty_mean']:>8.3f} {top['diversity']:>8.3f} "
                     f"{t.get('diversity', nan):>6.3f} {top.get('diversity_beyond_intent', nan):>6.3f} "
                     f"{t.get('diversity_beyond_intent', nan):>6.3f} {top.get('non_word_rate', nan):>8.3f} "
                     f"{t.get('non_word_rate', nan):>7.3f} {top.get('subject_kept', nan):>8.3f} "
                     f"{t.get('subject_kept', nan):>7.3f} {top.get('stock_phrases', nan):>6.3f} "
                     f"{t.get('stock_phrases', nan):>7.3f}  {format_difference(m.get('top_vs_teacher'))}")
    return lines + ["div+: diversity beyond the intent's words (distinct-2 of the bigrams that hold none, pooled)",
                    f"goals: {GOALS}"]


def format_difference(diff: dict | None) -> str:
    """``+0.012 [-0.010, +0.034]`` for a :func:`paired_difference`; ``-`` without a teacher."""
    if not diff or diff.get("mean") is None:
        return "-"
    ci = f" [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]" if diff.get("ci95") else ""
    return f"{diff['mean']:+.3f}{ci}"


def write_report(result: dict, directory: str | Path) -> Path:
    """Markdown report with one relevance and one length figure (plotly HTML) per task."""
    from udrl.plots import length_figure, relevance_figure

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    after = f" after the first {result['skip']}" if result.get("skip") else ""
    if result.get("left_out"):
        w = result["left_out"]
        after += f" (the {w['n_intents']} tuning intents, {w['skip'] + 1} to {w['skip'] + w['n_intents']}, left out)"
    lines = ["# Student evaluation", "", f"Checkpoint `{result['checkpoint']}`, {result['n_intents']} intents "
             f"from `{result['intents']}`{after}, {result['samples']} samples per intent and command.", "",
             f"Command: `{result['command']}`", "", "```", *summary_lines(result), "```", ""]
    for task, m in result["tasks"].items():
        rel = relevance_figure(m["sweep"], m["teacher"], title=f"{task}: relevance")
        length = length_figure(m["length_sweep"], m["teacher"], title=f"{task}: length")
        for name, fig in ((f"{task}_relevance.html", rel), (f"{task}_length.html", length)):
            fig.write_html(d / name, include_plotlyjs="cdn")
        lines += [f"## {task}", "", f"- [achieved vs commanded relevance]({task}_relevance.html)",
                  f"- [achieved vs commanded length]({task}_length.html)", "",
                  "| relevance command | achieved mean | sd | length | novelty | diversity |", "|---|---|---|---|---|---|"]
        lines += [f"| {s['relevance_command']:.3f} | {s['relevance_mean']:.3f} | {s['relevance_std']:.3f} | "
                  f"{s['length_mean']:.1f} | {s['novelty_mean']:.3f} | {s['diversity']:.3f} |" for s in m["sweep"]]
        lines += ["", "| length command | token sent | achieved mean | MAE |", "|---|---|---|---|"]
        lines += [f"| {s['length_command']} | {s['length_token']} | "
                  f"{s['length_mean']:.1f} | {s['length_mae']:.2f} |"
                  for s in m["length_sweep"]]
        lines.append("")
    path = d / "README.md"
    path.write_text("\n".join(lines))
    (d / "eval.json").write_text(json.dumps(result, indent=2))
    return path
