"""Subject-swap augmentation: teach the student to carry a subject it never saw from intent to output.

Test intents have subjects the training intents never mention, so the student must *copy* the subject
rather than recall it. For each training record, the intent's subject words (not its format, modifier or
function words) are replaced by random English words, the same way in the intent and in the output; the
new pair is then scored by the same rewards as the teacher's samples, so its commands stay honest
hindsight labels: a sample that carried the new subject keeps a high relevance, one that ignored it gets
a low one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from udrl.config import AugmentConfig
from udrl.corpus import ShardWriter, load_corpus
from udrl.intents import frame_words, subject_words

AUGMENTED_SPLIT = "train"  # only training records are augmented; the test split stays the teacher's own


def subject_pool(kind: str) -> list[str]:
    """Replacement subjects: ``words`` (single words, :func:`word_pool`) or ``wordnet`` (WordNet nouns and
    names, multi-word and rare ones included, from the training partition of the open-vocabulary intents)."""
    if kind == "wordnet":
        from udrl.intents import training_nouns

        return training_nouns()
    if kind == "words":
        return word_pool()
    raise ValueError(f"unknown subject pool {kind!r}; choose words or wordnet")


def word_pool(min_len: int = 4, max_len: int = 12) -> list[str]:
    """Whole lower-case English words from the relevance model's WordPiece vocabulary (30k entries).

    A general vocabulary, not the test subjects: any word a user might type is as likely as any other.
    """
    from udrl.rewards import relevance_model_path

    vocab = next(Path(relevance_model_path()).rglob("vocab.txt"), None)
    if vocab is None:
        raise FileNotFoundError(f"no vocab.txt under {relevance_model_path()}")
    kept = frame_words()
    words = {w for w in vocab.read_text(encoding="utf-8").split()
             if w.isascii() and w.isalpha() and w.islower() and min_len <= len(w) <= max_len}
    return sorted(words - kept)


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def swap_words(text: str, mapping: dict[str, str]) -> str:
    """``text`` with each whole word in ``mapping`` (any case) replaced, keeping its capitalisation."""
    if not mapping:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b", re.IGNORECASE)
    return pattern.sub(lambda m: _match_case(mapping[m.group(0).lower()], m.group(0)), text)


def swap_subject(record: dict, pool: Sequence[str], rng: random.Random, copy: int,
                 rate: float = 0.7) -> dict | None:
    """A copy of ``record`` with some of its subject words replaced (rewards not yet scored), or None."""
    subject = subject_words(record["intent"])
    if not subject:
        return None
    chosen = [w for w in subject if rng.random() < rate] or [rng.choice(subject)]
    mapping = {w: rng.choice(pool) for w in chosen}
    return {**record, "id": f"{record['id']}-swap{copy}", "intent": swap_words(record["intent"], mapping),
            "output": swap_words(record["output"], mapping), "split": AUGMENTED_SPLIT,
            "augmented_from": record["id"], "rewards": None}


def augment(cfg: AugmentConfig) -> dict:
    """The ``augment`` stage: subject-swapped copies of the training records of ``cfg.corpus``."""
    return augment_corpus(cfg.corpus, cfg.out, copies=cfg.copies, seed=cfg.seed, pool=cfg.pool)


def augment_corpus(corpus: str | Path, out_dir: str | Path, copies: int = AugmentConfig.copies,
                   seed: int = AugmentConfig.seed, pool: str = AugmentConfig.pool, batch: int = 2048,
                   progress: bool = True) -> dict:
    """Write ``copies`` subject-swapped, re-scored variants of every training record to ``out_dir``.

    Deterministic for a seed, and the first ``k`` copies of a run are the records a run with ``copies=k``
    writes; an existing ``out_dir`` with records is refused rather than mixed.
    """
    from tqdm.auto import tqdm

    from udrl.rewards import score

    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.glob("*.jsonl")):
        raise FileExistsError(f"{out_dir} already holds records; remove it to rebuild")
    records = [r for r in load_corpus(corpus, split="train") if "augmented_from" not in r]
    if not records:
        raise ValueError(f"no training records in {corpus}")
    rng = random.Random(seed)
    pool_kind, pool = pool, subject_pool(pool)
    variants = [v for copy in range(copies) for r in records
                if (v := swap_subject(r, pool, rng, copy)) is not None]
    writer = ShardWriter(out_dir, prefix="swap")
    try:
        for start in tqdm(range(0, len(variants), batch), desc="augment", unit="batch", disable=not progress):
            chunk = variants[start : start + batch]
            for v, rewards in zip(chunk, score([v["intent"] for v in chunk], [v["output"] for v in chunk])):
                writer.write({**v, "rewards": rewards})
    finally:
        writer.close()
    return {"source_records": len(records), "written": len(variants), "copies": copies, "pool": len(pool),
            "pool_kind": pool_kind}
