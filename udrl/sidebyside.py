"""Student and teacher on the same intents, for reading by eye: ``python -m udrl sidebyside``.

Three files go to ``out``:

- ``pairs.md``: for each item its task, intent and two outputs, A and B, whose order a seeded coin chose;
  nothing in the file says which system wrote which, so it can be handed to blind readers as it is;
- ``key.json``: which side the student took in each item, both outputs, their non-word rates and whether
  they kept the subject, and the settings that wrote them;
- ``examples.md``: the same items unblinded (intent, student, teacher), for a report.

The student writes at its top relevance command and its median length with its checkpoint's settings (the
app's Generate tab with the relevance slider at the top; ``word_guard``: with the word guard); the teacher
samples as the evaluation compares it.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

from udrl import invocation
from udrl.config import TEACHER_TEMPERATURE, TEACHER_TOP_P, SideBySideConfig, task_list
from udrl.corpus import read_intents

SIDES = ("A", "B")


def _cell(text: str) -> str:
    """Text fit for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|") or "(empty)"


def side_by_side(cfg: SideBySideConfig) -> dict:
    """Write ``pairs.md``, ``key.json`` and ``examples.md`` to ``cfg.out``; returns the key."""
    from udrl import rewards
    from udrl.student import check_checkpoint, load_student
    from udrl.teacher import load_teacher

    check_checkpoint(cfg.checkpoint)
    intents = read_intents(cfg.intents)[cfg.skip : cfg.skip + cfg.limit]
    if not intents:
        raise ValueError(f"no intents in {cfg.intents} after skipping {cfg.skip}")
    student, teacher = load_student(cfg.checkpoint).with_word_guard(cfg.word_guard), load_teacher(cfg.teacher)
    items = []
    for task in task_list(cfg.tasks):
        written = student.generate(intents, task, n=1, seed=cfg.seed)
        taught = teacher.generate(intents, task, n=1, seed=cfg.seed, temperature=TEACHER_TEMPERATURE,
                                  top_p=TEACHER_TOP_P)
        outputs = {"student": [g[0].text for g in written], "teacher": [g[0].text for g in taught]}
        language = {system: {"non_word_rate": rewards.non_word_rate(intents, texts),
                             "subject_kept": rewards.subject_kept(intents, texts)}
                    for system, texts in outputs.items()}
        for i, intent in enumerate(intents):
            items.append({"task": task, "intent": intent,
                          **{system: {"output": outputs[system][i],
                                      "non_word_rate": round(language[system]["non_word_rate"][i], 4),
                                      "subject_kept": bool(language[system]["subject_kept"][i])}
                             for system in outputs}})
    rng = random.Random(cfg.seed)
    rng.shuffle(items)  # tasks interleaved, so a reader does not judge one task's run of items in a row
    for number, item in enumerate(items, 1):
        item["item"] = number
        item["student_side"] = rng.choice(SIDES)
    key = {"command": invocation("sidebyside", "udrl.sidebyside.side_by_side"), "checkpoint": cfg.checkpoint,
           "student_version": student.version, "teacher": teacher.model, "intents": cfg.intents, "skip": cfg.skip,
           "seed": cfg.seed, "word_guard": cfg.word_guard,
           "student_sampling": {t: asdict(student.sampling_for(t)) for t in task_list(cfg.tasks)},
           "teacher_sampling": {"temperature": TEACHER_TEMPERATURE, "top_p": TEACHER_TOP_P}, "items": items}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "key.json").write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    (out / "pairs.md").write_text(blind_pairs(items), encoding="utf-8")
    (out / "examples.md").write_text(unblinded(items), encoding="utf-8")
    return key


def blind_pairs(items: list[dict]) -> str:
    """The items as blind pairs: A and B in each item's own order, no system named."""
    lines = ["| item | task | intent | A | B |", "|---|---|---|---|---|"]
    for item in items:
        first, second = ("student", "teacher") if item["student_side"] == "A" else ("teacher", "student")
        lines.append(f"| {item['item']} | {item['task']} | {_cell(item['intent'])} | {_cell(item[first]['output'])} "
                     f"| {_cell(item[second]['output'])} |")
    return "\n".join(lines) + "\n"


def unblinded(items: list[dict]) -> str:
    """The items with the systems named, in item order."""
    lines = ["| item | task | intent | student | teacher |", "|---|---|---|---|---|"]
    for item in items:
        lines.append(f"| {item['item']} | {item['task']} | {_cell(item['intent'])} | "
                     f"{_cell(item['student']['output'])} | {_cell(item['teacher']['output'])} |")
    return "\n".join(lines) + "\n"
