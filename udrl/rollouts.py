"""Student rollouts on intents it was not trained on, relabelled by the rewards: ``python -m udrl rollouts``.

One round of iterated UDRL: the student writes outputs for new intents under commands spread over each
task's range (relevance over the range it was trained on, length over the lengths the teacher writes), and
the rewards relabel every output with what it achieved (hindsight), so an output that missed its command
still teaches what the command it met means. Only outputs that keep every subject word of the intent and
hold no word outside the English word lists and the intent are kept: a round teaches the student to carry a
new subject into clean English, not its inventions. With ``--word-guard`` the student decodes under the
word guard, so far more outputs pass and the round teaches the model alone what the guard enforced (expert
iteration). With ``--phrase-cap`` a 4-word phrase without an intent word may recur in only so many kept
outputs of a task, so a round does not teach the student its own stock phrases ("found a new cafe
announcement", "bright pink and white") and narrow its range. With ``--teacher-rank N`` the teacher reads each
intent's clean outputs and only its N likeliest stay (:mod:`udrl.fluency`): the round teaches the student the
English of its samples that the teacher would have written, not merely those that pass the word lists. The
records (``source: "student"``) join the next training run through ``train --augmented``. With ``--keep
mistakes`` the round keeps the opposite: outputs holding an invented word, decoded without the guard, for
``train --word-samples``, where the word loss learns from the begun words the model got wrong. Intents of
the held-out test files are never rolled out.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from udrl import rewards
from udrl.config import RolloutsConfig, task_list
from udrl.corpus import ShardWriter, read_intents, record_id
from udrl.feedback import held_out_intents
from udrl.fluency import TeacherFluency

PREFIX = "rollout"


def teacher_ranks(judge: TeacherFluency, task: str, flat: list[tuple], clean: list[bool],
                  best: int) -> dict[int, float]:
    """The teacher's score (:class:`udrl.fluency.TeacherFluency`) of the ``best`` likeliest clean outputs of
    each intent, by their index in ``flat`` (``(intent, sample, output)`` triples, an intent's together)."""
    chosen: dict[int, float] = {}
    by_intent: dict[str, list[int]] = {}
    for j, (intent, _, _) in enumerate(flat):
        if clean[j]:
            by_intent.setdefault(intent, []).append(j)
    for intent, indices in by_intent.items():
        scores = judge.score(task, intent, [flat[j][2].text for j in indices])
        ranked = sorted(zip(scores, indices), key=lambda pair: -pair[0])[:best]
        chosen.update({j: score for score, j in ranked})
    return chosen


def rollouts(cfg: RolloutsConfig) -> dict:
    """Write relabelled student outputs to ``cfg.out`` (refused if it already holds records); returns counts."""
    from tqdm.auto import tqdm

    from udrl.student import check_checkpoint, load_student

    out = Path(cfg.out)
    if out.is_dir() and any(out.glob(f"{PREFIX}-*.jsonl")):
        raise FileExistsError(f"{out} already holds rollouts; remove it to roll out again")
    check_checkpoint(cfg.checkpoint)
    held_out = held_out_intents(cfg.held_out)
    intents = [i for i in read_intents(cfg.intents) if i not in held_out][cfg.skip :][: cfg.limit]
    if not intents:
        raise ValueError(f"no intents in {cfg.intents} outside the held-out files {cfg.held_out} "
                         f"after skipping {cfg.skip}")
    student = load_student(cfg.checkpoint)
    rng = np.random.default_rng(cfg.seed)
    kept, dropped = Counter(), Counter()
    tasks = task_list(cfg.tasks)
    caps = {task: rewards.PhraseCap(cfg.phrase_cap) for task in tasks}
    judge = TeacherFluency() if cfg.teacher_rank else None
    writer = ShardWriter(out, prefix=PREFIX)
    blocks = [(task, start) for task in tasks for start in range(0, len(intents), cfg.block)]
    try:
        for number, (task, start) in enumerate(tqdm(blocks, desc="rollouts", unit="block")):
            block = intents[start : start + cfg.block]
            lo, hi = student.encoding.relevance_range[task]
            relevance = float(rng.uniform(lo, hi))  # one command per block: the student decodes a block at once
            # lengths the teacher writes for the task: a 40-word headline command only teaches rambling
            short, long = student.encoding.length_range[task]
            length = int(rng.integers(short, long + 1))
            seed = cfg.seed * 1_000_003 + number
            groups = student.generate(block, task, relevance=relevance, length=length, n=cfg.samples, seed=seed,
                                      temperature=cfg.temperature, word_guard=cfg.word_guard)
            flat = [(intent, k, out) for intent, group in zip(block, groups) for k, out in enumerate(group)]
            texts = [o.text for _, _, o in flat]
            flat_intents = [i for i, _, _ in flat]
            non_words = rewards.non_word_rate(flat_intents, texts)
            if cfg.keep == "mistakes":  # for the word loss: the begun words where the model goes wrong
                wanted = [nw > 0 for nw in non_words]
            else:  # clean: in real words, with the subject kept
                subjects = rewards.subject_kept(flat_intents, texts)
                wanted = [bool(t.strip()) and nw == 0 and kept_subject
                          for t, nw, kept_subject in zip(texts, non_words, subjects)]
            fluency = teacher_ranks(judge, task, flat, wanted, cfg.teacher_rank) if judge else {}
            if judge:  # only the teacher's likeliest clean outputs of each intent stay
                wanted = [j in fluency for j in range(len(flat))]
            keep = [ok and caps[task].admit(intent, t) for intent, t, ok in zip(flat_intents, texts, wanted)]
            chosen = [(j, f, text) for j, (f, text, k) in enumerate(zip(flat, texts, keep)) if k]
            dropped[task] += len(flat) - len(chosen)
            scores = rewards.score([f[0] for _, f, _ in chosen], [text for _, _, text in chosen])
            for (j, (intent, k, o), text), score in zip(chosen, scores):
                extra = {"teacher_logprob": round(fluency[j], 4)} if j in fluency else {}
                writer.write({
                    "id": f"{record_id(intent, task, k)}-{PREFIX}{cfg.seed}", "intent": intent, "task": task,
                    "output": text, "split": "train", "teacher": {"backend": "student", "model": student.version},
                    "decoding": {**o.sampling, **{c: v for c, v in o.command.items() if c != "task"}},
                    "seed": seed, "rewards": score, "latency_ms": round(o.latency_ms, 2), "source": "student",
                    **extra,
                })
                kept[task] += 1
    finally:
        writer.close()
    return {"intents": len(intents), "kept": dict(kept), "dropped": dict(dropped), "out": str(out)}
