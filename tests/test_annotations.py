"""Ratings are never lost: WAL, one transaction per rating, concurrent writers, kill -9 of the app."""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from udrl.demo.annotations import AnnotationError, RatingStore, wilson_interval

from conftest import ROOT, free_port

OLD_SCHEMA = """
CREATE TABLE items (
    id TEXT PRIMARY KEY, created TEXT NOT NULL, intent TEXT NOT NULL, task TEXT NOT NULL,
    relevance REAL, length INTEGER, output_a TEXT NOT NULL, output_b TEXT NOT NULL,
    model_a TEXT NOT NULL, model_b TEXT NOT NULL, teacher_version TEXT, student_version TEXT
);
CREATE TABLE ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL REFERENCES items(id), annotator TEXT NOT NULL,
    verdict TEXT NOT NULL, winner TEXT, comment TEXT, created TEXT NOT NULL
);
"""


def _item(store: RatingStore, i: int = 0, student_first: bool = True) -> str:
    return store.add_item(f"intent {i}", "headline", 0.7, 8, "teacher text", "student text", "teacher@v",
                          "student@v", student_first=student_first)["item_id"]


def test_wal_mode_and_sides_recorded(tmp_path):
    store = RatingStore(tmp_path / "r.sqlite")
    assert store._connect().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    a = _item(store, 1, student_first=True)
    b = _item(store, 2, student_first=False)
    store.rate(a, "ann", "A")  # A is the student here
    store.rate(b, "ann", "A")  # A is the teacher here
    store.rate(b, "ann", "tie")  # a changed mind: a new row; the first stays
    store.rate(b, "bob", "A")
    rows = store.rows()
    assert [r["winner"] for r in rows] == ["student", "teacher", None, "teacher"]
    assert [r["latest"] for r in rows] == [1, 0, 1, 1]
    assert rows[0]["output_a"] == "student text" and rows[1]["output_a"] == "teacher text"
    assert rows[0]["version_a"] == "student@v" and rows[1]["version_a"] == "teacher@v"
    [summary] = store.summary()  # last verdicts: ann's tie on b, not her first vote
    assert (summary["system_1"], summary["system_2"]) == ("student", "teacher")
    assert (summary["wins_1"], summary["wins_2"], summary["tie"]) == (1, 1, 1)
    assert summary["win_rate"] == 0.5 and summary["ci95"][0] < 0.5 < summary["ci95"][1]
    [pair] = store.agreement()  # one shared item, rated differently
    assert (pair["annotator_1"], pair["annotator_2"], pair["shared_items"], pair["agreement"]) == ("ann", "bob", 1, 0)


def test_old_database_is_migrated_without_losing_rows(tmp_path):
    """A ratings.sqlite written before sessions gets the new columns; its rows read as before."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO items VALUES ('old1', '2025-01-01T00:00:00', 'lost cat', 'headline', 0.7, 8, "
                   "'teacher text', 'student text', 'teacher', 'student', 'llama@v', 'student@v')")
        db.execute("INSERT INTO ratings (item_id, annotator, verdict, winner, comment, created) "
                   "VALUES ('old1', 'ann', 'B', 'student', 'ok', '2025-01-01T00:00:01')")
    store = RatingStore(path)
    [row] = store.rows()
    assert (row["rating_id"], row["winner"], row["comment"], row["session_id"]) == (1, "student", "ok", None)
    assert (row["version_a"], row["version_b"]) == ("llama@v", "student@v")
    columns = {r[1] for r in store._connect().execute("PRAGMA table_info(items)")}
    assert {"session_id", "position", "version_a", "version_b", "details"} <= columns
    session = store.open_session("set", ["a", "b", "c"], "headline", ("teacher", "student"), seed=1, size=2)
    side = {"output": "x", "version": "v"}
    item = store.add_pair("a", "headline", {**side, "system": "teacher"}, {**side, "system": "student"},
                          session_id=session["session_id"], position=0)
    store.rate(item["item_id"], "ann", "A")
    assert store.count() == 2 and RatingStore(path).count() == 2  # opening again migrates nothing twice


def test_a_session_is_the_same_for_everyone_and_its_items_are_shared(tmp_path):
    store = RatingStore(tmp_path / "r.sqlite")
    intents = [f"intent {i}" for i in range(10)]
    one = store.open_session("set", intents, "headline", ("teacher", "student"), seed=3, size=4)
    two = store.open_session("set", intents, "headline", ("student", "teacher"), seed=3, size=4)
    assert one == two and one["size"] == 4 and one["intents"] != intents[:4]
    assert store.open_session("set", intents, "headline", ("teacher", "student"), 4, 4)["session_id"] != one["session_id"]
    side = {"version": "v"}
    first = store.add_pair("intent", "headline", {**side, "system": "teacher", "output": "t"},
                           {**side, "system": "student", "output": "s"}, session_id=one["session_id"], position=0)
    later = store.add_pair("intent", "headline", {**side, "system": "student", "output": "s2"},
                           {**side, "system": "teacher", "output": "t2"}, session_id=one["session_id"], position=0)
    assert later == first  # the first item stored at a position is everyone's
    store.rate(first["item_id"], " ann ", "B")
    assert store.rated_positions(one["session_id"], "ann") == {0} and not store.rated_positions(one["session_id"], "bob")


def test_bad_ratings_are_refused_clearly(tmp_path):
    store = RatingStore(tmp_path / "r.sqlite")
    item = _item(store)
    with pytest.raises(AnnotationError, match="verdict"):
        store.rate(item, "ann", "C")
    with pytest.raises(AnnotationError, match="annotator"):
        store.rate(item, "  ", "A")
    with pytest.raises(AnnotationError, match="unknown item"):
        store.rate("nope", "ann", "A")
    assert store.count() == 0


def test_twenty_concurrent_writers_fifty_ratings_each(tmp_path):
    store = RatingStore(tmp_path / "r.sqlite")
    items = [_item(store, i, i % 2 == 0) for i in range(20)]
    errors = []

    def writer(k: int) -> None:
        try:
            for j in range(50):
                store.rate(items[k], f"annotator-{k}", ("A", "B", "tie", "both_bad")[j % 4], f"c{j}")
        except Exception as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count() == 1000
    exported = list(csv.DictReader(io.StringIO(store.export_csv(tmp_path / "out.csv"))))
    table = store.rows()
    assert len(exported) == len(table) == 1000
    assert [r["rating_id"] for r in exported] == [str(r["rating_id"]) for r in table]
    assert all(e["comment"] == t["comment"] and e["verdict"] == t["verdict"] for e, t in zip(exported, table))
    assert (tmp_path / "out.csv").open(newline="").read() == store.export_csv()


def test_unwritable_path_says_how_to_fix(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(AnnotationError, match="UDRL_RATINGS_DB"):
        RatingStore(blocked / "ratings.sqlite")


def test_wilson_interval():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(8, 10)
    assert 0.44 < lo < 0.5 and 0.94 < hi < 0.97


def test_kill_9_loses_no_acknowledged_rating(tiny_student, tmp_path):
    from gradio_client import Client

    db = tmp_path / "ratings.sqlite"
    store = RatingStore(db)
    items = [_item(store, i) for i in range(10)]
    port = free_port()
    env = {**os.environ, "UDRL_CHECKPOINT": str(tiny_student), "UDRL_RATINGS_DB": str(db),
           "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                assert time.time() < deadline and proc.poll() is None, "app did not start"
                time.sleep(0.5)
        acknowledged: list[int] = []
        stop = threading.Event()

        def stream() -> None:
            i = 0
            while not stop.is_set():
                try:
                    result = client.predict(items[i % 10], "streamer", "A", f"n{i}", api_name="/rate")
                except Exception:  # the server died under us: everything before was acknowledged
                    return
                acknowledged.append(result["rating_id"])
                i += 1

        thread = threading.Thread(target=stream)
        thread.start()
        while len(acknowledged) < 30 and thread.is_alive():
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        stop.set()
        thread.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acknowledged) >= 30
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM ratings")}
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged ratings lost"
    print(f"kill -9: {len(acknowledged)} acknowledged, {len(stored)} rows written, 0 lost")
