"""Annotators' verdicts as training signal: the outputs they preferred become corpus records.

``python -m udrl feedback`` reads the ratings database of the app's Annotate tab, takes each annotator's last
verdict on each item, and writes the output a majority preferred as a record of the corpus contract (scored
by the same rewards as every record, with ``source: "annotators"``). ``python -m udrl train --feedback
data/feedback`` adds the training-split ones to its data: the first human-in-the-loop round of upside-down
RL, where a person's choice, not only the teacher, says what a good answer to an intent is. The student
still learns the rewards each output *achieved* as its command, so a preferred output teaches what its
relevance and length look like when done well.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from udrl import rewards
from udrl.config import FeedbackConfig
from udrl.corpus import ShardWriter, read_intents
from udrl.demo.annotations import RatingStore, category
from udrl.tasks import TASK_NAMES

PREFIX = "feedback"
EMPTY_OUTPUTS = {"", "(no output)"}  # what the Annotate tab shows for an empty answer


def held_out_intents(files: str) -> set[str]:
    """Intents of the comma-separated files whose records must not be trained on."""
    intents: set[str] = set()
    for path in filter(None, (p.strip() for p in files.split(","))):
        intents.update(read_intents(path))
    return intents


def preferences(rows: list[dict], min_votes: int = 1) -> tuple[list[dict], Counter]:
    """(preferred outputs, reasons items gave none) from the last verdict of each annotator on each item.

    An output is preferred when more annotators chose it than chose the other side, more than said both
    were bad, and at least ``min_votes`` did; ties count for neither side.
    """
    by_item: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_item[row["item_id"]].append(row)
    chosen, skipped = [], Counter()
    for item_id, votes in by_item.items():
        first = votes[0]
        count = Counter(category(v) for v in votes)
        sides = {first["model_a"]: ("a", first["model_b"]), first["model_b"]: ("b", first["model_a"])}
        winner = next((s for s, (_, other) in sides.items() if count[s] > count[other]), None)
        if count["both_bad"] and count["both_bad"] >= max(count[s] for s in sides):
            skipped["both bad"] += 1
            continue
        if winner is None:
            skipped["no preference (tie or split vote)"] += 1
            continue
        side, loser = sides[winner]
        if count[winner] < min_votes:
            skipped[f"fewer than {min_votes} votes"] += 1
        elif first["task"] not in TASK_NAMES:
            skipped["unknown task"] += 1
        elif first[f"output_{side}"].strip() in EMPTY_OUTPUTS:
            skipped["empty output"] += 1
        else:
            chosen.append({"item_id": item_id, "side": side, "system": winner, "preferred_over": loser,
                           "votes_for": count[winner], "votes_against": count[loser], "annotators": len(votes),
                           "row": first})
    return chosen, skipped


def feedback(cfg: FeedbackConfig) -> dict:
    """The ``feedback`` stage: rewrite ``cfg.out`` with one record per preferred output; returns the counts."""
    if not Path(cfg.ratings).is_file():
        raise FileNotFoundError(f"no ratings database at {cfg.ratings}: rate items in the app's Annotate tab "
                                "first (or pass --ratings)")
    store = RatingStore(cfg.ratings)
    latest = store.latest()
    chosen, skipped = preferences(latest, cfg.min_votes)
    held_out = held_out_intents(cfg.held_out)
    items = {c["item_id"]: store.item(c["item_id"]) for c in chosen}
    scores = rewards.score([c["row"]["intent"] for c in chosen], [c["row"][f"output_{c['side']}"] for c in chosen])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{PREFIX}-[0-9]*.jsonl"):  # derived from the database: rewritten, never appended
        old.unlink()
    writer = ShardWriter(out, prefix=PREFIX)
    counts = {"split": Counter(), "tasks": Counter(), "systems": Counter()}
    for c, score in zip(chosen, scores):
        row, item = c["row"], items[c["item_id"]]
        details = item[f"details_{c['side']}"] or {}
        split = "test" if row["intent"] in held_out else "train"
        writer.write({
            "id": f"{row['task']}-annotators-{c['item_id'][:16]}", "intent": row["intent"], "task": row["task"],
            "output": row[f"output_{c['side']}"], "split": split,
            "teacher": {"backend": c["system"], "model": item[f"version_{c['side']}"]},
            "decoding": details.get("decoding") or {}, "seed": details.get("seed") or 0, "rewards": score,
            "latency_ms": None,  # not measured: the output was sampled to be rated
            "source": "annotators",
            "annotation": {"item_id": c["item_id"], "session_id": row["session_id"],
                           "preferred_over": c["preferred_over"], "votes_for": c["votes_for"],
                           "votes_against": c["votes_against"], "annotators": c["annotators"]},
        })
        counts["split"][split] += 1
        counts["tasks"][row["task"]] += 1
        counts["systems"][c["system"]] += 1
    writer.close()
    return {"items_rated": len({r["item_id"] for r in latest}), "votes": len(latest), "records": len(chosen),
            **{k: dict(v) for k, v in counts.items()}, "skipped": dict(skipped), "out": str(out)}
