"""Blind pairwise ratings of teacher vs student outputs, kept in SQLite.

WAL mode and one transaction per rating: a rating is durable once ``rate`` returns, even if the process
is killed right after. Items (the two outputs and which side is which) are stored when they are shown, so
a rating only names the item id and the verdict.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

VERDICTS = ("A", "B", "tie", "both_bad")
DEFAULT_DB = "data/annotations/ratings.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, created TEXT NOT NULL, intent TEXT NOT NULL, task TEXT NOT NULL,
    relevance REAL, length INTEGER, output_a TEXT NOT NULL, output_b TEXT NOT NULL,
    model_a TEXT NOT NULL, model_b TEXT NOT NULL, teacher_version TEXT, student_version TEXT
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL REFERENCES items(id), annotator TEXT NOT NULL,
    verdict TEXT NOT NULL, winner TEXT, comment TEXT, created TEXT NOT NULL
);
"""
EXPORT_COLUMNS = ("rating_id", "created", "annotator", "verdict", "winner", "comment", "item_id", "intent",
                  "task", "relevance", "length", "output_a", "output_b", "model_a", "model_b",
                  "teacher_version", "student_version")


class AnnotationError(RuntimeError):
    """The ratings store cannot be used; the message says why and how to fix it."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def default_path() -> str:
    return os.environ.get("UDRL_RATINGS_DB", DEFAULT_DB)


class RatingStore:
    """A SQLite file of items and ratings; safe to share between the app's threads."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or default_path())
        self._local = threading.local()
        # One writer at a time inside the process: SQLite's busy handler backs off by sleeping, which
        # under many threads costs far more than waiting on a lock.
        self._write_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise AnnotationError(f"cannot write ratings to {self.path} ({err}); set UDRL_RATINGS_DB to a "
                                  "writable file") from None

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an acknowledged rating survives a crash
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def _write(self, sql: str, params: tuple) -> int:
        db = self._connect()
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                cur = db.execute(sql, params)
                db.execute("COMMIT")
                return cur.lastrowid
            except sqlite3.Error as err:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise AnnotationError(f"could not save to {self.path}: {err}") from None

    def add_item(self, intent: str, task: str, relevance: float | None, length: int | None,
                 teacher_output: str, student_output: str, teacher_version: str, student_version: str,
                 student_first: bool) -> dict:
        """Store an item with the two outputs in the given order; returns what the annotator sees."""
        item_id = uuid.uuid4().hex
        a, b = (student_output, teacher_output) if student_first else (teacher_output, student_output)
        model_a, model_b = ("student", "teacher") if student_first else ("teacher", "student")
        self._write("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (item_id, _now(), intent, task, relevance, length, a, b, model_a, model_b, teacher_version,
                     student_version))
        return {"item_id": item_id, "intent": intent, "task": task, "output_a": a, "output_b": b}

    def rate(self, item_id: str, annotator: str, verdict: str, comment: str = "") -> int:
        """Record one verdict (``A``, ``B``, ``tie`` or ``both_bad``); returns the rating id once durable."""
        if verdict not in VERDICTS:
            raise AnnotationError(f"verdict must be one of {', '.join(VERDICTS)}")
        annotator = " ".join(str(annotator or "").split())[:80]
        if not annotator:
            raise AnnotationError("enter your annotator name first")
        row = self._connect().execute("SELECT model_a, model_b FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise AnnotationError("unknown item: load a new item and rate it")
        winner = {"A": row[0], "B": row[1]}.get(verdict)
        return self._write("INSERT INTO ratings (item_id, annotator, verdict, winner, comment, created) "
                           "VALUES (?,?,?,?,?,?)", (item_id, annotator, verdict, winner,
                                                    str(comment or "")[:2000], _now()))

    def rows(self) -> list[dict]:
        """Every rating joined with its item, oldest first."""
        db = self._connect()
        cur = db.execute(
            "SELECT r.id, r.created, r.annotator, r.verdict, r.winner, r.comment, i.id, i.intent, i.task, "
            "i.relevance, i.length, i.output_a, i.output_b, i.model_a, i.model_b, i.teacher_version, "
            "i.student_version FROM ratings r JOIN items i ON i.id = r.item_id ORDER BY r.id")
        return [dict(zip(EXPORT_COLUMNS, row)) for row in cur.fetchall()]

    def count(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM ratings").fetchone()[0]

    def export_csv(self, path: str | Path | None = None) -> str:
        """CSV of ``rows()``; written to ``path`` if given, returned as text either way."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows())
        text = buf.getvalue()
        if path:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def summary(self) -> list[dict]:
        """Per task: student wins, teacher wins, ties, both bad, win rate over decisive votes, 95 % interval."""
        stats: dict[str, dict] = {}
        for row in self.rows():
            s = stats.setdefault(row["task"], {"task": row["task"], "student": 0, "teacher": 0, "tie": 0,
                                               "both_bad": 0})
            if row["winner"]:
                s[row["winner"]] += 1
            else:
                s[row["verdict"]] += 1
        for s in stats.values():
            lo, hi = wilson_interval(s["student"], s["student"] + s["teacher"])
            decisive = s["student"] + s["teacher"]
            s["student_win_rate"] = round(s["student"] / decisive, 3) if decisive else None
            s["ci95"] = [round(lo, 3), round(hi, 3)] if decisive else None
        return sorted(stats.values(), key=lambda s: s["task"])


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
