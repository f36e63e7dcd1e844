"""Intents on disk, corpus records, sharded JSONL and the resumable corpus generation loop."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from udrl.tasks import TASK_NAMES, get_task

SPLITS = ("train", "test")
RECORD_FIELDS = ("id", "intent", "task", "output", "split", "teacher", "decoding", "seed", "rewards",
                 "latency_ms")
REWARD_FIELDS = ("relevance", "length", "novelty")
# Decoding settings cycled over the samples of one (intent, task): from focused to adventurous, so each
# intent gets a spread of rewards for the student to learn what low and high commands mean.
DECODING_GRID = ((0.3, 0.9), (0.8, 0.95), (1.1, 0.98), (0.6, 1.0), (1.4, 1.0))


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


def _intent_hash(intent: str) -> int:
    return int(hashlib.sha1(intent.encode("utf-8")).hexdigest()[:8], 16)


def decoding_for(intent: str, sample: int) -> tuple[float, float]:
    """(temperature, top_p) of one sample: consecutive samples of an intent take different settings."""
    return DECODING_GRID[(_intent_hash(intent) + sample) % len(DECODING_GRID)]


def validate_record(record: dict, raw: bool = False) -> None:
    """Raise ValueError if ``record`` does not follow the corpus contract (``raw``: rewards may be null)."""
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        raise ValueError(f"record {record.get('id', '?')} lacks {', '.join(missing)}")
    if record["task"] not in TASK_NAMES:
        raise ValueError(f"record {record['id']}: unknown task {record['task']!r}")
    if record["split"] not in SPLITS:
        raise ValueError(f"record {record['id']}: split must be train or test")
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
    """Records of every ``*.jsonl`` shard under ``directory``, in file order; a torn last line is skipped."""
    for shard in sorted(Path(directory).glob("*.jsonl")):
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


@dataclass
class GenerationPlan:
    """Which intents, tasks and samples to generate; ``pending`` lists what the corpus still lacks."""

    intents: dict[str, str]  # intent -> split
    tasks: tuple[str, ...]
    samples: int
    seed: int = 0
    worker: tuple[int, int] = (0, 1)  # (index, count): workers share the intents by hash

    def pending(self, done: set[str], chunk: int = 32) -> Iterator[tuple[str, list[tuple[str, int]]]]:
        """(task, [(intent, sample), ...]) groups, interleaving splits and tasks so a partial corpus is balanced.

        Groups keep one task so the teacher's prompt prefix stays cached between calls.
        """
        index, count = self.worker
        order = sorted(i for i in self.intents if _intent_hash(i) % count == index)
        random.Random(self.seed).shuffle(order)
        for start in range(0, len(order), chunk):
            block = order[start : start + chunk]
            for task in self.tasks:
                todo = [(i, k) for i in block for k in range(self.samples) if record_id(i, task, k) not in done]
                if todo:
                    yield task, todo


def _bucket_by_decoding(todo: list[tuple[str, int]]) -> dict[tuple[float, float], list[tuple[str, int]]]:
    buckets: dict[tuple[float, float], list[tuple[str, int]]] = {}
    for intent, k in todo:
        buckets.setdefault(decoding_for(intent, k), []).append((intent, k))
    return buckets


def _sample_bucket(teacher, task: str, items: list[tuple[str, int]], temperature: float, top_p: float,
                   seed: int) -> list:
    """One teacher call for a bucket of (intent, sample) pairs sharing a decoding setting; empty answers
    are retried twice with other seeds."""
    samples = [s[0] for s in teacher.generate([i for i, _ in items], task, n=1, seed=seed,
                                              temperature=temperature, top_p=top_p)]
    for attempt in (1, 2):
        empty = [j for j, s in enumerate(samples) if "empty" in s.flags]
        if not empty:
            break
        retry = teacher.generate([items[j][0] for j in empty], task, n=1, seed=seed + attempt * 7919,
                                 temperature=temperature, top_p=top_p)
        for j, again in zip(empty, retry):
            samples[j] = again[0]
    return samples


def generate_corpus(teacher, plan: GenerationPlan, out_dir: str | Path, shard_size: int = 2000,
                    limit: int | None = None, progress: bool = True, chunk: int = 32, score: bool = True) -> int:
    """Run the teacher over the plan, score each sample and append records; return how many were written.

    With ``score=False`` records are written with ``rewards: null`` (raw samples, e.g. from a GPU host
    without the reward model); ``score_raw`` labels them later.
    """
    from tqdm.auto import tqdm

    from udrl import rewards

    done = {r["id"] for r in iter_records(out_dir)}
    total = sum(len(todo) for _, todo in plan.pending(done, chunk))
    if limit is not None:
        total = min(total, limit)
    index, count = plan.worker
    writer = ShardWriter(out_dir, shard_size, prefix="part" if count == 1 else f"part-w{index}of{count}")
    teacher_name = {"backend": teacher.backend, "model": teacher.model}
    written = 0
    bar = tqdm(total=total, unit="sample", disable=not progress, smoothing=0.05)
    try:
        for task, todo in plan.pending(done, chunk):
            if written >= total:
                break
            todo = todo[: total - written]
            outputs = []
            for (temperature, top_p), items in _bucket_by_decoding(todo).items():
                seed = plan.seed * 1_000_003 + _intent_hash(items[0][0]) % 1_000_000 + items[0][1]
                samples = _sample_bucket(teacher, task, items, temperature, top_p, seed)
                outputs.extend((i, k, s) for (i, k), s in zip(items, samples))
                bar.update(len(items))
            kept = [(i, k, s) for i, k, s in outputs if "empty" not in s.flags]
            scores = (rewards.score([i for i, _, _ in kept], [s.text for _, _, s in kept]) if score
                      else [None] * len(kept))
            for (intent, k, sample), reward in zip(kept, scores):
                writer.write({
                    "id": record_id(intent, task, k), "intent": intent, "task": task, "output": sample.text,
                    "split": plan.intents[intent], "teacher": teacher_name,
                    "decoding": {**sample.decoding, "max_new_tokens": get_task(task).max_new_tokens},
                    "seed": sample.seed, "rewards": reward, "latency_ms": round(sample.latency_ms, 1),
                    "tokens": {"prompt": sample.prompt_tokens, "completion": sample.completion_tokens},
                    "flags": sample.flags,
                }, raw=not score)
                written += 1
    finally:
        bar.close()
        writer.close()
    return written


def score_raw(raw_dir: str | Path, out_dir: str | Path, batch: int = 2048, shard_size: int = 2000,
              prefix: str = "part-scored") -> int:
    """Label raw records (``rewards: null``) with their rewards and append those not yet in ``out_dir``."""
    from udrl import rewards

    done = {r["id"] for r in iter_records(out_dir)}
    todo = [r for r in iter_records(raw_dir) if r["id"] not in done]
    writer = ShardWriter(out_dir, shard_size, prefix=prefix)
    try:
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            for record, reward in zip(chunk, rewards.score([r["intent"] for r in chunk],
                                                           [r["output"] for r in chunk])):
                writer.write({**record, "rewards": reward})
    finally:
        writer.close()
    return len(todo)
