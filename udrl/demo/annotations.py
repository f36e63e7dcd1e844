"""Blind pairwise ratings of two systems' outputs, kept in SQLite.

WAL mode and one transaction per rating: a rating is durable once ``rate`` returns, even if the process
is killed right after. Items (the two outputs and which system wrote which side) are stored when they are
first shown, so a rating only names the item id and the verdict.

Ratings are append-only: a second verdict on an item by the same annotator is a new row with its own time,
and every summary takes each annotator's last verdict on each item. Nothing is ever updated or deleted.

A session is a seeded shuffle of a list of intents for one task and one pair of systems; its id is a hash
of what it holds, so two annotators who open the same session get the same id, and the item at each
position is generated once and shared: they see the same outputs on the same sides, in the same order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
import sqlite3
import threading
import uuid
import warnings
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

VERDICTS = ("A", "B", "tie", "both_bad")
DEFAULT_DB = "data/annotations/ratings.sqlite"
TEACHER, STUDENT = "teacher", "student"  # system names; any other system is a checkpoint folder

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
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created TEXT NOT NULL, name TEXT NOT NULL, task TEXT NOT NULL,
    system_1 TEXT NOT NULL, system_2 TEXT NOT NULL, seed INTEGER NOT NULL, intents TEXT NOT NULL
);
"""
# Columns added to ``items`` after the first release; a database written before gets them on open.
_ITEM_COLUMNS = {"session_id": "TEXT", "position": "INTEGER", "version_a": "TEXT", "version_b": "TEXT",
                 "details": "TEXT"}
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS items_session_position ON items(session_id, position)
    WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ratings_item ON ratings(item_id);
"""
EXPORT_COLUMNS = ("rating_id", "created", "annotator", "verdict", "winner", "comment", "item_id", "intent",
                  "task", "relevance", "length", "output_a", "output_b", "model_a", "model_b",
                  "teacher_version", "student_version", "session_id", "position", "version_a", "version_b",
                  "latest")
AGREEMENT_COLUMNS = ("annotator_1", "annotator_2", "shared_items", "agreement", "kappa")
# Items written before sessions had no version per side: it is the teacher's or the student's.
_VERSION = "COALESCE(i.version_{s}, CASE i.model_{s} WHEN 'teacher' THEN i.teacher_version ELSE i.student_version END)"
_ROWS_SQL = (
    "SELECT r.id, r.created, r.annotator, r.verdict, r.winner, r.comment, i.id, i.intent, i.task, "
    "i.relevance, i.length, i.output_a, i.output_b, i.model_a, i.model_b, i.teacher_version, "
    f"i.student_version, i.session_id, i.position, {_VERSION.format(s='a')}, {_VERSION.format(s='b')} "
    "FROM ratings r JOIN items i ON i.id = r.item_id")


class AnnotationError(RuntimeError):
    """The ratings store cannot be used; the message says why and how to fix it."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def default_path() -> str:
    return os.environ.get("UDRL_RATINGS_DB", DEFAULT_DB)


def clean_annotator(name) -> str:
    """An annotator's name as stored: whitespace collapsed, at most 80 characters."""
    return " ".join(str(name or "").split())[:80]


def category(row: dict) -> str:
    """What a verdict says in terms of systems, not sides: the winner's name, ``tie`` or ``both_bad``."""
    return row["winner"] or row["verdict"]


def pair_order(systems) -> tuple[str, str]:
    """The two systems of a comparison in the order the summary shows them: another checkpoint before the
    committed student before the teacher (the first is the one whose win rate is reported), else by name."""
    rank = {TEACHER: 2, STUDENT: 1}
    a, b = sorted(systems, key=lambda s: (rank.get(s, 0), s))
    return a, b


class RatingStore:
    """A SQLite file of sessions, items and ratings; safe to share between the app's threads."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or default_path())
        self._local = threading.local()
        # One writer at a time inside the process: SQLite's busy handler backs off by sleeping, which
        # under many threads costs far more than waiting on a lock.
        self._write_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            db.executescript(_SCHEMA)
            self._migrate(db)
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

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Add the columns and indexes of later versions to a database written by an earlier one (rows are
        kept as they are; the new columns of old items stay empty)."""
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")  # two processes opening one old file: one migrates, one waits
            try:
                have = {row[1] for row in db.execute("PRAGMA table_info(items)")}
                for column, kind in _ITEM_COLUMNS.items():
                    if column not in have:
                        db.execute(f"ALTER TABLE items ADD COLUMN {column} {kind}")
                for statement in filter(str.strip, _INDEXES.split(";")):
                    db.execute(statement)
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise

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

    # -- sessions and items -----------------------------------------------------------------------------
    def open_session(self, name: str, intents: list[str], task: str, systems: tuple[str, str], seed: int,
                     size: int) -> dict:
        """The session of ``size`` intents drawn by a shuffle seeded with ``seed``; the same arguments
        always give the same session (and its id), whoever opens it."""
        order = list(intents)
        random.Random(seed).shuffle(order)
        order = order[:max(1, size)]
        pair = sorted(systems)
        key = json.dumps([order, task, pair, seed], ensure_ascii=False)
        session_id = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
        self._write("INSERT OR IGNORE INTO sessions VALUES (?,?,?,?,?,?,?,?)",
                    (session_id, _now(), name, task, pair[0], pair[1], seed, json.dumps(order, ensure_ascii=False)))
        return self.session(session_id)

    def session(self, session_id: str) -> dict | None:
        row = self._connect().execute("SELECT id, name, task, system_1, system_2, seed, intents FROM sessions "
                                      "WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            return None
        intents = json.loads(row[6])
        return {"session_id": row[0], "name": row[1], "task": row[2], "systems": (row[3], row[4]),
                "seed": row[5], "intents": intents, "size": len(intents)}

    def add_pair(self, intent: str, task: str, a: dict, b: dict, relevance: float | None = None,
                 length: int | None = None, session_id: str | None = None, position: int | None = None) -> dict:
        """Store an item: ``a`` and ``b`` are the two sides, each ``{"system", "output", "version"}`` and
        optional ``"details"`` (seed and decoding). Within a session the first item stored at a position
        is the one every annotator gets. Returns what the annotator sees (no system names)."""
        item_id = uuid.uuid4().hex
        teacher_version = next((s["version"] for s in (a, b) if s["system"] == TEACHER), None)
        student_version = next((s["version"] for s in (a, b) if s["system"] != TEACHER), None)
        details = json.dumps({"A": a.get("details"), "B": b.get("details")})
        self._write("INSERT OR IGNORE INTO items (id, created, intent, task, relevance, length, output_a, output_b, "
                    "model_a, model_b, teacher_version, student_version, session_id, position, version_a, "
                    "version_b, details) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (item_id, _now(), intent, task, relevance, length, a["output"], b["output"], a["system"],
                     b["system"], teacher_version, student_version, session_id, position, a["version"],
                     b["version"], details))
        if session_id is not None:
            return self.session_item(session_id, position)
        return {"item_id": item_id, "intent": intent, "task": task, "output_a": a["output"],
                "output_b": b["output"]}

    def add_item(self, intent: str, task: str, relevance: float | None, length: int | None,
                 teacher_output: str, student_output: str, teacher_version: str, student_version: str,
                 student_first: bool) -> dict:
        """A teacher-vs-student item outside any session, the student on side A if ``student_first``."""
        teacher = {"system": TEACHER, "output": teacher_output, "version": teacher_version}
        student = {"system": STUDENT, "output": student_output, "version": student_version}
        a, b = (student, teacher) if student_first else (teacher, student)
        return self.add_pair(intent, task, a, b, relevance, length)

    def _shown(self, row) -> dict | None:
        if row is None:
            return None
        return {"item_id": row[0], "intent": row[1], "task": row[2], "output_a": row[3], "output_b": row[4],
                "session_id": row[5], "position": row[6]}

    def session_item(self, session_id: str, position: int) -> dict | None:
        """The item at ``position`` of a session, as the annotator sees it, or None if not made yet."""
        return self._shown(self._connect().execute(
            "SELECT id, intent, task, output_a, output_b, session_id, position FROM items "
            "WHERE session_id = ? AND position = ?", (session_id, position)).fetchone())

    def item(self, item_id: str) -> dict | None:
        """Everything stored about an item, the systems behind its sides included."""
        row = self._connect().execute(
            "SELECT id, intent, task, output_a, output_b, session_id, position, model_a, model_b, "
            f"{_VERSION.format(s='a')}, {_VERSION.format(s='b')}, details, relevance, length FROM items i "
            "WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            return None
        details = json.loads(row[11]) if row[11] else {}
        return {**self._shown(row), "model_a": row[7], "model_b": row[8], "version_a": row[9],
                "version_b": row[10], "details_a": details.get("A"), "details_b": details.get("B"),
                "relevance": row[12], "length": row[13]}

    def rated_positions(self, session_id: str, annotator: str) -> set[int]:
        """Positions of a session this annotator has given a verdict on."""
        cur = self._connect().execute(
            "SELECT DISTINCT i.position FROM ratings r JOIN items i ON i.id = r.item_id "
            "WHERE i.session_id = ? AND r.annotator = ?", (session_id, clean_annotator(annotator)))
        return {row[0] for row in cur.fetchall()}

    # -- ratings ----------------------------------------------------------------------------------------
    def rate(self, item_id: str, annotator: str, verdict: str, comment: str = "") -> int:
        """Record one verdict (``A``, ``B``, ``tie`` or ``both_bad``) as a new row; returns the rating id
        once durable. A second verdict on the same item is another row, never a change to the first."""
        if verdict not in VERDICTS:
            raise AnnotationError(f"verdict must be one of {', '.join(VERDICTS)}")
        annotator = clean_annotator(annotator)
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
        """Every rating joined with its item, oldest first; ``latest`` marks each annotator's last verdict on
        each item (the one summaries count)."""
        cur = self._connect().execute(_ROWS_SQL + " ORDER BY r.id")
        rows = [dict(zip(EXPORT_COLUMNS, row)) for row in cur.fetchall()]
        seen = set()
        for row in reversed(rows):
            key = (row["annotator"], row["item_id"])
            row["latest"] = int(key not in seen)
            seen.add(key)
        return rows

    def latest(self) -> list[dict]:
        """Each annotator's last verdict on each item."""
        return [row for row in self.rows() if row["latest"]]

    def count(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM ratings").fetchone()[0]

    # -- reports ----------------------------------------------------------------------------------------
    def summary(self) -> list[dict]:
        """Per task and pair of systems: each one's wins, ties, both bad, the first system's win rate over
        decisive votes and its 95 % Wilson interval (last verdicts only)."""
        stats: dict[tuple, dict] = {}
        for row in self.latest():
            first, second = pair_order((row["model_a"], row["model_b"]))
            s = stats.setdefault((row["task"], first, second), {
                "task": row["task"], "system_1": first, "system_2": second, "wins_1": 0, "wins_2": 0, "tie": 0,
                "both_bad": 0})
            if row["winner"]:
                s["wins_1" if row["winner"] == first else "wins_2"] += 1
            else:
                s[row["verdict"]] += 1
        for s in stats.values():
            decisive = s["wins_1"] + s["wins_2"]
            lo, hi = wilson_interval(s["wins_1"], decisive)
            s["win_rate"] = round(s["wins_1"] / decisive, 3) if decisive else None
            s["ci95"] = [round(lo, 3), round(hi, 3)] if decisive else None
        return [stats[key] for key in sorted(stats)]

    def agreement(self) -> list[dict]:
        """Cohen's kappa between every two annotators over the items both rated (last verdicts), each verdict
        read as the system it prefers (or tie, both bad), so sides never matter."""
        verdicts: dict[str, dict[str, str]] = {}
        for row in self.latest():
            verdicts.setdefault(row["annotator"], {})[row["item_id"]] = category(row)
        out = []
        for first, second in combinations(sorted(verdicts), 2):
            shared = sorted(set(verdicts[first]) & set(verdicts[second]))
            if not shared:
                continue
            a = [verdicts[first][i] for i in shared]
            b = [verdicts[second][i] for i in shared]
            kappa = cohen_kappa(a, b)
            out.append({"annotator_1": first, "annotator_2": second, "shared_items": len(shared),
                        "agreement": round(sum(x == y for x, y in zip(a, b)) / len(shared), 3),
                        "kappa": None if kappa is None else round(kappa, 4)})
        return out

    def export_csv(self, path: str | Path | None = None) -> str:
        """CSV of ``rows()``; written to ``path`` if given, returned as text either way."""
        return _write_csv(EXPORT_COLUMNS, self.rows(), path)

    def export_agreement_csv(self, path: str | Path | None = None) -> str:
        """CSV of ``agreement()`` (one row per pair of annotators with shared items)."""
        return _write_csv(AGREEMENT_COLUMNS, self.agreement(), path)


def _write_csv(columns, rows: list[dict], path: str | Path | None) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    text = buf.getvalue()
    if path:
        Path(path).write_text(text, encoding="utf-8")
    return text


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa of two annotators' labels on the same items; None where it is undefined (both gave
    one and the same label to every item, so chance agreement is already 1)."""
    from sklearn.metrics import cohen_kappa_score

    labels = sorted(set(a) | set(b))
    if len(labels) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kappa = float(cohen_kappa_score(a, b, labels=labels))
    return None if math.isnan(kappa) else kappa


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
