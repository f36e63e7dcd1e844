"""The ``generate`` stage: run the teacher over intents x tasks, score each sample, append corpus records.

Resumable: a record's id names its (intent, task, sample), so a rerun generates only what is missing.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from udrl.config import GenerateConfig, ScoreConfig, task_list
from udrl.corpus import SPLITS, ShardWriter, intent_hash, iter_records, read_intents, record_id
from udrl.tasks import get_task

# Decoding settings cycled over the samples of one (intent, task): from focused to adventurous, so each
# intent gets a spread of rewards for the student to learn what low and high commands mean.
DECODING_GRID = ((0.3, 0.9), (0.8, 0.95), (1.1, 0.98), (0.6, 1.0), (1.4, 1.0))


def decoding_for(intent: str, sample: int) -> tuple[float, float]:
    """(temperature, top_p) of one sample: consecutive samples of an intent take different settings."""
    return DECODING_GRID[(intent_hash(intent) + sample) % len(DECODING_GRID)]


@dataclass
class GenerationPlan:
    """Which intents, tasks and samples to generate; ``pending`` lists what the corpus still lacks."""

    intents: dict[str, str]  # intent -> split
    tasks: tuple[str, ...]
    samples: int
    seed: int = 0
    worker: tuple[int, int] = (0, 1)  # (index, count): workers share the intents by hash

    def pending(self, done: set[str], chunk: int = GenerateConfig.chunk) -> Iterator[tuple[str, list[tuple[str, int]]]]:
        """(task, [(intent, sample), ...]) groups, interleaving splits and tasks so a partial corpus is balanced.

        Groups keep one task so the teacher's prompt prefix stays cached between calls.
        """
        index, count = self.worker
        order = sorted(i for i in self.intents if intent_hash(i) % count == index)
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


def generate(cfg: GenerateConfig) -> int:
    """The ``generate`` stage: the teacher over every intent of ``cfg.intents`` (train and test) x task;
    returns how many records were written."""
    from udrl.teacher import load_teacher

    intents: dict[str, str] = {}
    for split in SPLITS:
        for intent in read_intents(Path(cfg.intents) / f"{split}.txt"):
            intents.setdefault(intent, split)
    extra = {"n_threads": cfg.threads} if cfg.backend == "llama.cpp" and cfg.threads else {}
    if cfg.backend == "transformers" and cfg.batch_size:
        extra["batch_size"] = cfg.batch_size
    if cfg.backend == "openai":
        extra.update(concurrency=cfg.concurrency, retries=cfg.retries, backoff=cfg.backoff,
                     max_failures=cfg.max_failures, timeout=cfg.timeout)
    teacher = load_teacher(cfg.backend, model=cfg.model, url=cfg.url, **extra)
    plan = GenerationPlan(intents, tuple(task_list(cfg.tasks)), cfg.samples, seed=cfg.seed,
                          worker=cfg.worker_share())
    return generate_corpus(teacher, plan, cfg.out, shard_size=cfg.shard_size, limit=cfg.limit, chunk=cfg.chunk,
                           score=not cfg.raw)


def score(cfg: ScoreConfig) -> int:
    """The ``score`` stage: label raw samples (``generate --raw``) into the corpus."""
    raw = Path(cfg.raw)
    if not raw.exists():
        raise FileNotFoundError(f"not found: {raw}")
    return score_raw(raw, cfg.out)


def generate_corpus(teacher, plan: GenerationPlan, out_dir: str | Path, shard_size: int = GenerateConfig.shard_size,
                    limit: int | None = None, progress: bool = True, chunk: int = GenerateConfig.chunk,
                    score: bool = True) -> int:
    """Run the teacher over the plan, score each sample and append records; return how many were written.

    With ``score=False`` records are written with ``rewards: null`` (raw samples, e.g. from a GPU host
    without the reward model); ``score_raw`` labels them later. Records are written in the plan's order,
    whatever order the teacher's answers arrive in. A teacher with servers (``teacher.pool``) shows their
    samples/s, failures and retries in the progress bar and after the run.
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
    pool = getattr(teacher, "pool", None)
    try:
        for task, todo in plan.pending(done, chunk):
            if written >= total:
                break
            todo = todo[: total - written]
            outputs = []
            for (temperature, top_p), items in _bucket_by_decoding(todo).items():
                seed = plan.seed * 1_000_003 + intent_hash(items[0][0]) % 1_000_000 + items[0][1]
                samples = _sample_bucket(teacher, task, items, temperature, top_p, seed)
                outputs.extend((i, k, s) for (i, k), s in zip(items, samples))
                if pool is not None:
                    bar.set_postfix_str(pool.progress(), refresh=False)
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
        if progress and pool is not None:
            print("\n".join(pool.summary()), file=sys.stderr)
    return written


def score_raw(raw_dir: str | Path, out_dir: str | Path, batch: int = 2048,
              shard_size: int = GenerateConfig.shard_size,
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
