"""The corpus on disk: intents files, the record contract, and sharded JSONL that survives a kill."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from udrl.tasks import TASK_NAMES

SPLITS = ("train", "test")
RECORD_FIELDS = ("id", "intent", "task", "output", "split", "teacher", "decoding", "seed", "rewards",
                 "latency_ms")
REWARD_FIELDS = ("relevance", "length", "novelty")
# Who chose the output: the teacher's samples carry no ``source``; ``python -m udrl feedback`` writes
# ``"annotators"`` on outputs people preferred in the app, ``python -m udrl rollouts`` ``"student"`` on the
# student's own outputs that a round of iterated UDRL keeps.
SOURCES = ("teacher", "annotators", "student")


def read_intents(path: str | Path) -> list[str]:
    """Non-empty, stripped lines of an intents file, in order, without duplicates."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"intents file not found: {path}")
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return list(dict.fromkeys(line for line in lines if line))


def record_id(intent: str, task: str, sample: int) -> str:
    """Stable id of the ``sample``-th output for (intent, task): the key that makes generation resumable."""
    digest = hashlib.sha1(intent.encode("utf-8")).hexdigest()[:12]
    return f"{task}-{digest}-{sample}"


def intent_hash(intent: str) -> int:
    """A stable 32-bit hash of an intent (worker shares, seeds and sample settings)."""
    return int(hashlib.sha1(intent.encode("utf-8")).hexdigest()[:8], 16)


def validate_record(record: dict, raw: bool = False) -> None:
    """Raise ValueError if ``record`` does not follow the corpus contract (``raw``: rewards may be null)."""
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        raise ValueError(f"record {record.get('id', '?')} lacks {', '.join(missing)}")
    if record["task"] not in TASK_NAMES:
        raise ValueError(f"record {record['id']}: unknown task {record['task']!r}")
    if record["split"] not in SPLITS:
        raise ValueError(f"record {record['id']}: split must be train or test")
    if record.get("source", "teacher") not in SOURCES:
        raise ValueError(f"record {record['id']}: source must be one of {', '.join(SOURCES)}")
    if not isinstance(record["output"], str) or not record["output"].strip():
        raise ValueError(f"record {record['id']}: empty output")
    rewards = record["rewards"]
    if raw and rewards is None:
        return
    if not isinstance(rewards, dict) or set(REWARD_FIELDS) - set(rewards):
        raise ValueError(f"record {record['id']}: rewards need {', '.join(REWARD_FIELDS)}")
    if not -1.0 <= rewards["relevance"] <= 1.0 or not 0.0 <= rewards["novelty"] <= 1.0:
        raise ValueError(f"record {record['id']}: reward out of range")


def iter_records(directory: str | Path) -> Iterator[dict]:
    """Records of every ``*.jsonl`` shard under ``directory`` (subfolders included), in path order; a torn
    last line is skipped."""
    for shard in shards(directory):
        yield from shard_records(shard)


def shards(directory: str | Path) -> list[Path]:
    """The ``*.jsonl`` shards under ``directory`` (subfolders included), in path order."""
    return sorted(Path(directory).rglob("*.jsonl"))


def shard_records(shard: Path) -> Iterator[dict]:
    """Records of one shard; a torn last line is skipped."""
    with shard.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break  # written when the process was killed mid-line: regenerated on resume
            yield json.loads(line)


def load_corpus(directory: str | Path, split: str | None = None, tasks: Iterable[str] | None = None
                ) -> list[dict]:
    """All records, optionally one split and some tasks."""
    wanted = set(tasks) if tasks else None
    return [r for r in iter_records(directory)
            if (split is None or r["split"] == split) and (wanted is None or r["task"] in wanted)]


class ShardWriter:
    """Appends records to ``part-NNNNN.jsonl`` files of at most ``shard_size`` records, flushing each line.

    A torn trailing line left by a killed process is cut off when the writer opens, so a restart
    never leaves a corrupt shard and never writes a record id twice.
    """

    def __init__(self, directory: str | Path, shard_size: int = 2000, prefix: str = "part"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.prefix = prefix
        shards = sorted(self.directory.glob(f"{prefix}-[0-9]*.jsonl"))
        for shard in shards:
            _repair(shard)
        self.index = int(shards[-1].stem.rsplit("-", 1)[1]) if shards else 0
        self.count = _count_lines(shards[-1]) if shards else 0
        self._fh = None

    def write(self, record: dict, raw: bool = False) -> None:
        validate_record(record, raw=raw)
        if self._fh is None or self.count >= self.shard_size:
            if self._fh is not None:
                self._fh.close()
                self.index += 1
                self.count = 0
            self._fh = (self.directory / f"{self.prefix}-{self.index:05d}.jsonl").open("a", encoding="utf-8")
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def _repair(shard: Path) -> None:
    data = shard.read_bytes()
    if data and not data.endswith(b"\n"):
        shard.write_bytes(data[: data.rfind(b"\n") + 1])
