"""Choose each task's sampling settings by measurement: ``python -m udrl tune``.

For every (guidance scale, temperature) of a grid, the relevance command is swept on tuning intents that
the evaluation does not use (``skip`` passes over its intents), and the highest command is compared with
the teacher on the same intents. Per task the setting that meets the most evaluation goals wins, then the
one with the largest summed margin; it is saved as ``sampling.json`` beside the checkpoint, with every
trial, so the choice can be checked.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from itertools import product

from tqdm import tqdm

from udrl.data import read_intents
from udrl.evaluate import relevance_control, teacher_stats
from udrl.sampling import GUIDANCE_SCALES, TEMPERATURES, Sampling, save_sampling

def goal_margins(task: str, control: dict, teacher: dict) -> dict[str, float]:
    """How far each evaluation goal is met (>= 0) or missed (< 0); see issue-level goals in the README."""
    top = control["top"]
    diversity_ratio = top["diversity"] / max(teacher["diversity"], 1e-9)
    margins = {
        "spearman": control["spearman"] - 0.95,
        "pearson": control["pearson"] - 0.6,
        "relevance": (top["relevance_mean"] - teacher["relevance_mean"]) / max(teacher["relevance_mean"], 1e-9),
        "diversity": min(diversity_ratio - 0.9, 1.1 - diversity_ratio),  # within 10 % of the teacher's
    }
    if task == "image_prompt":  # no copying the intent back
        margins["novelty"] = top["novelty_mean"] - 0.5
    return {k: round(v, 4) for k, v in margins.items()}


def _rank(trial: dict) -> tuple[int, float]:
    margins = trial["margins"].values()
    return sum(m >= 0 for m in margins), sum(margins)


def tune(checkpoint: str, intents_file: str, tasks: list[str], skip: int = 60, limit: int = 80,
         samples: int = 2, seed: int = 0, teacher_backend: str = "llama.cpp",
         guidance_scales: tuple[float, ...] = GUIDANCE_SCALES,
         temperatures: tuple[float, ...] = TEMPERATURES) -> dict:
    """Measure the grid on intents ``skip .. skip+limit`` of the file and save the best setting per task."""
    from udrl.student import load_student
    from udrl.teacher import load_teacher

    intents = read_intents(intents_file)[skip : skip + limit]
    if not intents:
        raise ValueError(f"no intents left in {intents_file} after skipping {skip}")
    student = load_student(checkpoint)
    teacher = load_teacher(teacher_backend)
    chosen, trials, teachers = {}, {}, {}
    grid = list(product(guidance_scales, temperatures))
    for task in tasks:
        teachers[task] = teacher_stats(teacher, intents, task, samples, seed)
        trials[task] = []
        for scale, temperature in tqdm(grid, desc=f"tune {task}"):
            control = relevance_control(student, intents, task, samples, seed, temperature=temperature,
                                        guidance_scale=scale)
            setting = student.sampling_for(task).replace(temperature=temperature, guidance_scale=scale)
            trials[task].append({"sampling": asdict(setting), "spearman": control["spearman"],
                                 "pearson": control["pearson"], "top": control["top"],
                                 "margins": goal_margins(task, control, teachers[task])})
        best = max(trials[task], key=_rank)
        chosen[task] = Sampling(**best["sampling"])
    command = ("python -m udrl " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["tune"] else "udrl.tune.tune")
    provenance = {"command": command, "intents": intents_file, "skip": skip, "n_intents": len(intents),
                  "samples": samples, "seed": seed, "teacher": teachers, "trials": trials}
    merged = {**student.sampling, **chosen}  # tasks not tuned this time keep their settings
    save_sampling(checkpoint, merged, provenance)
    return {"sampling": {t: asdict(s) for t, s in chosen.items()},
            "best": {t: max(trials[t], key=_rank) for t in tasks}, "teacher": teachers}
