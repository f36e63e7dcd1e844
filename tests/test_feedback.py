"""Annotators' verdicts become training signal: ``feedback`` writes corpus records that ``train`` takes."""

from __future__ import annotations

import json

from udrl.config import FeedbackConfig, TrainConfig
from udrl.corpus import load_corpus, validate_record
from udrl.demo.annotations import DEFAULT_DB, RatingStore


def _pair(store, intent, a, b, task="headline", **where):
    return store.add_pair(intent, task, {"system": a[0], "output": a[1], "version": f"{a[0]}@v"},
                          {"system": b[0], "output": b[1], "version": f"{b[0]}@v"}, **where)["item_id"]


def test_feedback_export_then_train_reads_it(tmp_path, tiny_corpus, capsys):
    from udrl.__main__ import main
    from udrl.train import train, usable

    assert FeedbackConfig().ratings == DEFAULT_DB
    store = RatingStore(tmp_path / "ratings.sqlite")
    session = store.open_session("set", ["lost cat poster"], "headline", ("teacher", "student"), seed=0, size=1)
    won = _pair(store, "lost cat poster", ("teacher", "Find our lost cat today"), ("student", "cat cat"),
                session_id=session["session_id"], position=0)
    split = _pair(store, "jazz night", ("student", "Jazz night downtown"), ("teacher", "A night of jazz"))
    bad = _pair(store, "yoga retreat", ("teacher", "yoga yoga"), ("student", "retreat"))
    tie = _pair(store, "book fair", ("teacher", "Books for all"), ("student", "Fair of books"))
    empty = _pair(store, "ski trip", ("student", "(no output)"), ("teacher", "Ski with us"))
    held = _pair(store, "science fair", ("teacher", "Science fair winners"), ("student", "Fair science"))
    changed = _pair(store, "pizza party", ("teacher", "Pizza for everyone"), ("student", "Party with pizza tonight"),
                    task="search_queries")
    for item, votes in ((won, {"ann": "A", "bob": "A"}), (split, {"ann": "A", "bob": "B"}), (bad, {"ann": "both_bad"}),
                        (tie, {"ann": "tie"}), (empty, {"ann": "A"}), (held, {"bob": "A"}), (changed, {"ann": "A"})):
        for annotator, verdict in votes.items():
            store.rate(item, annotator, verdict)
    store.rate(changed, "ann", "B")  # a changed mind: her last verdict counts
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("science fair\n")
    out = tmp_path / "feedback"
    args = ["feedback", "--ratings", str(tmp_path / "ratings.sqlite"), "--out", str(out), "--held-out", str(held_out)]
    assert main(args) == 0
    counts = json.loads(capsys.readouterr().out)
    print(f"\nfeedback export: {json.dumps(counts)}")
    assert (counts["items_rated"], counts["votes"], counts["records"]) == (7, 9, 3)
    assert counts["split"] == {"train": 2, "test": 1} and counts["systems"] == {"teacher": 2, "student": 1}
    assert counts["skipped"] == {"no preference (tie or split vote)": 2, "both bad": 1, "empty output": 1}
    assert main(args) == 0  # rerun: rewritten, not appended
    records = {r["intent"]: r for r in load_corpus(out)}
    assert len(records) == 3
    for record in records.values():
        validate_record(record)
        assert record["source"] == "annotators" and set(record["rewards"]) == {"relevance", "length", "novelty"}
    assert records["lost cat poster"]["output"] == "Find our lost cat today"
    assert records["lost cat poster"]["annotation"]["votes_for"] == 2
    assert records["lost cat poster"]["annotation"]["session_id"] == session["session_id"]
    assert records["pizza party"]["output"] == "Party with pizza tonight" and records["science fair"]["split"] == "test"

    checkpoint = tmp_path / "student"
    info = train(TrainConfig(corpus=str(tiny_corpus), feedback=str(out), out=str(checkpoint),
                             state_dir=str(tmp_path / "state"), vocab_size=400, n_layer=1, n_embd=16, n_head=2,
                             epochs=1, batch_size=16, max_steps=2, progress=False))
    corpus_train = sum(map(usable, load_corpus(tiny_corpus, split="train")))
    assert info["feedback_records"] == 2 and info["train_records"] == corpus_train + 2
    assert json.loads((checkpoint / "training.json").read_text())["feedback_records"] == 2
    card = (checkpoint / "README.md").read_text()
    assert "2 of them outputs annotators preferred" in card and str(out) in card
