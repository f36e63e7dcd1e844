"""Student and teacher on the same intents, for reading by eye: ``python -m udrl sidebyside``.

Three files go to ``out``:

- ``pairs.md``: for each item its task, intent and two outputs, A and B, whose order a seeded coin chose;
  nothing in the file says which system wrote which, so it can be handed to blind readers as it is;
- ``key.json``: which side the student took in each item, both outputs, their non-word rates and whether
  they kept the subject, and the settings that wrote them;
- ``examples.md``: the same items unblinded (intent, student, teacher), for a report.

Readers return one ``reader-<name>.json`` each to the folder: a list of ``{"item": 1, "prefer": "A" | "B" |
"tie", "invented_A": bool, "invented_B": bool, "subject_A": bool, "subject_B": bool}`` (``invented``: the
output holds an invented or mangled word; ``subject``: it keeps the intent's subject). ``python -m udrl
verdicts`` counts them against the key into ``verdicts.json``.

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
from udrl.config import TEACHER_TEMPERATURE, TEACHER_TOP_P, SideBySideConfig, VerdictsConfig, task_list
from udrl.corpus import read_intents

SIDES = ("A", "B")
SYSTEMS = ("student", "teacher")
VERDICT_FIELDS = ("invented", "subject")


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


def _reader_verdicts(path: Path, sides: dict[int, str]) -> list[dict]:
    """A reader's verdicts, checked against the key's items: one clear error for a malformed file."""
    try:
        verdicts = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from err
    if not isinstance(verdicts, list) or not verdicts:
        raise ValueError(f"{path}: expected a list of verdicts, one per item")
    seen = set()
    fields = [f"{f}_{side}" for f in VERDICT_FIELDS for side in SIDES]
    for n, verdict in enumerate(verdicts, 1):
        item = verdict.get("item") if isinstance(verdict, dict) else None
        if (type(item) is not int or item not in sides or verdict.get("prefer") not in (*SIDES, "tie")
                or not all(isinstance(verdict.get(f), bool) for f in fields)):
            raise ValueError(f"{path}: verdict {n} (item {item}) needs an item of the key, prefer A, B or tie, "
                             f"and true or false for {', '.join(fields)}")
        if item in seen:
            raise ValueError(f"{path}: item {item} is judged twice")
        seen.add(item)
    return verdicts


def score_verdicts(cfg: VerdictsConfig) -> dict:
    """Per reader: how often each system was preferred, held invented words and kept the subject, overall and
    per task, from the folder's ``key.json`` and ``reader-*.json``; written to ``cfg.out``."""
    folder = Path(cfg.folder)
    key_path, readers = folder / "key.json", sorted(folder.glob("reader-*.json"))
    if not key_path.is_file():
        raise FileNotFoundError(f"no key.json in {folder}: write the pairs with `python -m udrl sidebyside`")
    if not readers:
        raise FileNotFoundError(f"no reader-*.json in {folder}: each reader's verdicts go there")
    try:
        items = {item["item"]: item for item in json.loads(key_path.read_text(encoding="utf-8"))["items"]}
        sides = {number: item["student_side"] for number, item in items.items()}
        if not items or set(sides.values()) - set(SIDES) or not all(item["task"] for item in items.values()):
            raise ValueError("no items, or a side other than A and B")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{key_path} is not a key written by `python -m udrl sidebyside`: {err!r}") from err
    report = {"folder": str(folder), "items": len(items), "readers": {}}
    for path in readers:
        counts: dict[str, dict] = {}
        for verdict in _reader_verdicts(path, sides):
            side = {"student": sides[verdict["item"]]}
            side["teacher"] = SIDES[1 - SIDES.index(side["student"])]
            winner = next((s for s in SYSTEMS if side[s] == verdict["prefer"]), "tie")
            for group in ("all", items[verdict["item"]]["task"]):
                c = counts.setdefault(group, {"judged": 0, "preferred": dict.fromkeys((*SYSTEMS, "tie"), 0),
                                              **{f: dict.fromkeys(SYSTEMS, 0) for f in VERDICT_FIELDS}})
                c["judged"] += 1
                c["preferred"][winner] += 1
                for f in VERDICT_FIELDS:
                    for system in SYSTEMS:
                        c[f][system] += verdict[f"{f}_{side[system]}"]
        report["readers"][path.stem.removeprefix("reader-")] = counts
    out = Path(cfg.out) if cfg.out else folder / "verdicts.json"
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


def verdict_lines(report: dict) -> list[str]:
    """One line per reader: student preferred, invented words and subject kept, student / teacher."""
    lines = [f"{report['folder']}: {report['items']} items"]
    for reader, counts in report["readers"].items():
        c, n = counts["all"], counts["all"]["judged"]
        pct = {f: {s: 100 * c[f][s] / n for s in SYSTEMS} for f in VERDICT_FIELDS}
        lines.append(f"reader {reader}: {n} judged; student preferred {c['preferred']['student']} "
                     f"({100 * c['preferred']['student'] / n:.0f} %), teacher {c['preferred']['teacher']}, ties "
                     f"{c['preferred']['tie']}; invented words {pct['invented']['student']:.0f} % / "
                     f"{pct['invented']['teacher']:.0f} %; subject kept {pct['subject']['student']:.0f} % / "
                     f"{pct['subject']['teacher']:.0f} % (student / teacher)")
    return lines
