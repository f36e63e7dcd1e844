"""Choose each task's sampling settings by measurement: ``python -m udrl tune``.

For every (guidance scale, temperature, top-p, repetition penalty, sibling penalty) of a grid, the relevance command is
swept on tuning intents that the evaluation does not use (``skip`` passes over its intents), and the
highest command is compared with the teacher on the same intents (relevance, diversity, novelty, non-word
rate, subject kept), and the sweep's correlations with their goals. The settings that meet the most of those
goals are the finalists. Each finalist's length command is swept, with the commands sent as they are: the
words each command came to are the finalist's length calibration, and its length MAE is a goal as well
(<= 3 words). Then its relevance sweep is measured again as the student will run it, with length requests
sent through that calibration (``"calibrated": true`` in its trial). The finalist meeting the most goals
wins, then the one whose smallest margin is largest; it is saved as ``sampling.json`` beside the
checkpoint with its calibration and the command that chose each task's settings; every trial goes to a
file of its own (``TuneConfig.trials``), so the choice can be checked. A rerun on the same intents with the
same weights reuses the trials it finds there, so an interrupted or extended grid only measures what is new;
the teacher's figures are reused for any weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from udrl import invocation
from udrl.config import TuneConfig, task_list
from udrl.corpus import read_intents
from udrl.evaluate import (DIVERSITY_TOLERANCE, LENGTH_MAE_GOAL, NON_WORD_TOLERANCE, NOVELTY_GOAL, PEARSON_GOAL,
                           SPEARMAN_GOAL, SUBJECT_TOLERANCE, length_control, relevance_control, teacher_stats)
from udrl.student.sampling import LengthCalibration, Sampling, read_sampling_record, save_sampling

if TYPE_CHECKING:
    from udrl.student import Student


def goal_margins(task: str, control: dict, teacher: dict) -> dict[str, float]:
    """How far each relevance-sweep goal is met (>= 0) or missed (< 0), as in the evaluation."""
    top = control["top"]
    diversity_ratio = top["diversity"] / max(teacher["diversity"], 1e-9)
    margins = {
        "spearman": control["spearman"] - SPEARMAN_GOAL,
        "pearson": control["pearson"] - PEARSON_GOAL,
        "relevance": (top["relevance_mean"] - teacher["relevance_mean"]) / max(teacher["relevance_mean"], 1e-9),
        "diversity": DIVERSITY_TOLERANCE - abs(diversity_ratio - 1.0),
    }
    if task == "image_prompt":
        margins["novelty"] = top["novelty_mean"] - NOVELTY_GOAL
    if "non_word_rate" in top and "non_word_rate" in teacher:  # teacher figures cached before these metrics lack them
        margins["non_word"] = teacher["non_word_rate"] + NON_WORD_TOLERANCE - top["non_word_rate"]
        margins["subject_kept"] = top["subject_kept"] - (teacher["subject_kept"] - SUBJECT_TOLERANCE)
    return {k: round(v, 4) for k, v in margins.items()}


def _rank(trial: dict) -> tuple[int, float, float]:
    """Goals met, then the smallest margin: the evaluation runs on other intents, so the setting whose
    closest goal is farthest from its bound is the least likely to miss it there; then the summed margin."""
    margins = list(trial["margins"].values())
    return sum(m >= 0 for m in margins), min(margins), sum(margins)


def _relevance_goals_met(trial: dict) -> int:
    return sum(m >= 0 for goal, m in trial["margins"].items() if goal != "length")


def _relevance_trial(student: Student, intents: list[str], task: str, samples: int, seed: int, setting: dict,
                     teacher: dict, calibration: LengthCalibration | None = None) -> dict:
    """The relevance sweep of one setting and its goal margins; length requests go through ``calibration``
    (none: sent as they are)."""
    measured = student.with_length_calibration({task: calibration} if calibration else {})
    control = relevance_control(measured, intents, task, samples, seed, **setting)
    return {"sampling": setting, "relevance_commands": [s["relevance_command"] for s in control["sweep"]],
            "spearman": control["spearman"], "pearson": control["pearson"],
            "top": control["top"], "margins": goal_margins(task, control, teacher)}


def _cached(earlier: dict, key: dict) -> dict:
    """Trials and teacher figures of an earlier run (its trials file) on the same intents, samples and seed."""
    return earlier if all(earlier.get(k) == v for k, v in key.items()) else {}


def weights_digest(checkpoint: str | Path) -> str:
    """A short fingerprint of a checkpoint's weights: trials measured with other weights are not reused."""
    with open(Path(checkpoint, "model.safetensors"), "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:16]


def _commands(earlier: dict) -> dict[str, str]:
    """The command that chose each task's saved settings (a record without ``commands`` has one for all)."""
    return earlier.get("commands") or {task: earlier["command"] for task in earlier.get("tasks", {})
                                       if "command" in earlier}


def trials_path(cfg: TuneConfig, record: dict) -> Path:
    """Where the trials of a tuning run go: ``cfg.trials``, else the file the checkpoint's ``sampling.json``
    (``record``) names, else ``runs/tune/<checkpoint folder name>.json``."""
    return Path(cfg.trials or record.get("trials_file") or f"runs/tune/{Path(cfg.checkpoint).name}.json")


def tune(cfg: TuneConfig) -> dict:
    """The ``tune`` stage: measure the grid on intents ``skip .. skip+limit`` of the file, save the best setting
    per task as the checkpoint's ``sampling.json`` and every trial to :func:`trials_path` (a rerun reuses them)."""
    from udrl.cards import write_model_card
    from udrl.student import check_checkpoint, load_student
    from udrl.teacher import load_teacher

    checkpoint, intents_file, tasks, seed, samples = cfg.checkpoint, cfg.intents, task_list(cfg.tasks), cfg.seed, cfg.samples
    check_checkpoint(checkpoint)
    intents = read_intents(intents_file)[cfg.skip : cfg.skip + cfg.limit]
    if not intents:
        raise ValueError(f"no intents left in {intents_file} after skipping {cfg.skip}")
    loaded = load_student(checkpoint)
    student = loaded.with_length_calibration({})  # trials set their own
    key = {"intents": intents_file, "skip": cfg.skip, "n_intents": len(intents), "samples": samples, "seed": seed}
    earlier_record = read_sampling_record(checkpoint) or {}
    out = trials_path(cfg, earlier_record)
    # trials recorded inside sampling.json by earlier versions are read too
    earlier_trials = json.loads(out.read_text()) if out.is_file() else earlier_record
    cache = _cached(earlier_trials, key)
    weights = weights_digest(checkpoint)
    # the teacher's figures hold for any student, trials only for the weights that were measured
    kept = cache.get("trials", {}) if cache.get("weights") == weights else {}
    calibrated = dict(loaded.length_calibration)
    teacher = None
    chosen, best, trials, teachers = {}, {}, {}, {}
    grid = list(product(*cfg.grid().values()))
    for task in tasks:
        teachers[task] = cache.get("teacher", {}).get(task)
        if teachers[task] is None:
            teacher = teacher or load_teacher(cfg.teacher)
            teachers[task] = teacher_stats(teacher, intents, task, samples, seed)
        # a trial is reused only where it swept the commands a sweep sends now
        sweep = student.encoding.relevance_steps(task)
        earlier = {Sampling(**t["sampling"]): t for t in kept.get(task, []) if t.get("relevance_commands") == sweep}
        trials[task] = []
        for scale, temperature, top_p, penalty, siblings in tqdm(grid, desc=f"tune {task}"):
            setting = Sampling(temperature=temperature, top_p=top_p, guidance_scale=scale, repetition_penalty=penalty,
                               sibling_penalty=siblings)
            trial = earlier.get(setting)
            if trial is None:
                trial = _relevance_trial(student, intents, task, samples, seed, asdict(setting), teachers[task])
            else:  # margins of goals added since the trial was measured
                trial["margins"] = {**goal_margins(task, trial, teachers[task]),
                                    **{k: v for k, v in trial["margins"].items() if k == "length"}}
            trial["sampling"] = asdict(setting)  # every field, also for trials recorded before it existed
            trials[task].append(trial)
        most = max(map(_relevance_goals_met, trials[task]))
        finalists = [t for t in trials[task] if _relevance_goals_met(t) == most]
        for trial in tqdm(finalists, desc=f"length {task}"):
            if "length_curve" not in trial:
                lengths = length_control(student, intents, task, samples, seed, **trial["sampling"])
                trial["length_mae"] = lengths["length_mae"]
                trial["length_curve"] = [[s["length_command"], s["length_mean"]] for s in lengths["length_sweep"]]
                trial.pop("calibrated", None)
            if not trial.get("calibrated"):
                curve = LengthCalibration.from_points(trial["length_curve"])
                trial.update(_relevance_trial(student, intents, task, samples, seed, trial["sampling"],
                                              teachers[task], curve), calibrated=True)
            trial["margins"]["length"] = round((LENGTH_MAE_GOAL - trial["length_mae"]) / LENGTH_MAE_GOAL, 4)
        best[task] = max(finalists, key=_rank)
        chosen[task] = Sampling(**best[task]["sampling"])
        calibrated[task] = LengthCalibration.from_points(best[task]["length_curve"])
    command = invocation("tune", "udrl.tune.tune")
    provenance = {"command": command, "commands": {**_commands(earlier_record), **{task: command for task in tasks}},
                  **key, "trials_file": str(out)}
    merged = {**loaded.sampling, **chosen}  # tasks not tuned this time keep their settings
    save_sampling(checkpoint, merged, provenance, calibrated)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**key, "weights": weights, "command": command,
                               "teacher": {**cache.get("teacher", {}), **teachers},
                               "trials": {**kept, **trials}}, indent=1) + "\n")
    write_model_card(checkpoint)
    return {"sampling": {t: asdict(s) for t, s in chosen.items()}, "best": best, "teacher": teachers}


def summary_lines(result: dict) -> list[str]:
    """One line per tuned task: the chosen setting and what it measured against the teacher."""
    lines = []
    for task, best in result["best"].items():
        s, top, t = best["sampling"], best["top"], result["teacher"][task]
        lines.append(f"{task:<15} guidance {s['guidance_scale']:.1f} temperature {s['temperature']:.2f} "
                     f"top-p {s['top_p']:.2f} repetition penalty {s['repetition_penalty']:.2f} sibling penalty "
                     f"{s.get('sibling_penalty', 1.0):.2f}: "
                     f"spearman {best['spearman']:.3f} pearson {best['pearson']:.3f} top relevance "
                     f"{top['relevance_mean']:.3f} (teacher {t['relevance_mean']:.3f}) diversity {top['diversity']:.3f} "
                     f"(teacher {t['diversity']:.3f}) length MAE {best.get('length_mae', float('nan')):.2f} "
                     "before calibration")
    return lines
