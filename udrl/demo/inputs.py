"""Validation of what people (and API clients) send to the app: clear messages or stated clamps.

``InputError`` carries a message fit to show as is; clamps are returned as notes so the UI can say them.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field

from udrl.config import LENGTH_COMMAND_RANGE, MAX_INTENT_CHARS, TEACHER_TEMPERATURE, TEACHER_TOP_P

MAX_SAMPLES = 8
SEED_MODULUS = 2**32


class InputError(ValueError):
    """Bad input, with a message for the person who sent it."""


@dataclass
class Request:
    intent: str
    task: str
    relevance: float | None
    length: int
    n: int
    seed: int
    temperature: float
    top_p: float
    notes: list[str] = field(default_factory=list)
    guidance_scale: float | None = None  # None: the checkpoint's value for the task
    tuned_sampling: bool = True  # the student uses its checkpoint's settings; temperature, top_p: the teacher's only
    repetition_penalty: float | None = None  # None: the checkpoint's value for the task
    word_guard: bool = False  # the student redraws tokens that would leave real words


def clean_intent(intent) -> str:
    """Intent text without control characters (NUL included) and surrounding space; errors if unusable."""
    if not isinstance(intent, str):
        raise InputError("the intent must be text")
    if len(intent) > MAX_INTENT_CHARS * 4:
        raise InputError(f"the intent is {len(intent):,} characters long; the limit is {MAX_INTENT_CHARS}")
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") and c not in "\u200d" else c
                   for c in intent)
    text = " ".join(text.split())
    if not text:
        raise InputError("type an intent first, e.g. 'lost cat poster'")
    if len(text) > MAX_INTENT_CHARS:
        raise InputError(f"the intent is {len(text):,} characters long; the limit is {MAX_INTENT_CHARS}")
    return text


def _number(value, name: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {str(value)[:40]!r}") from None
    return number


def _clamped(value: float, lo: float, hi: float, name: str, notes: list[str]) -> float:
    if value < lo or value > hi:
        clamped = min(max(value, lo), hi)
        notes.append(f"{name} {value:g} is outside {lo:g}..{hi:g}; used {clamped:g}")
        return clamped
    return value


GUIDANCE_RANGE = (1.0, 5.0)
PENALTY_RANGE = (1.0, 3.0)


def parse_request(intent, task, relevance, length, n, seed, temperature=TEACHER_TEMPERATURE, top_p=TEACHER_TOP_P,
                  guidance=None, tuned=True,
                  penalty=None, word_guard=False, *, tasks: list[str],
                  relevance_range: dict[str, list[float]] | None = None) -> Request:
    """Validate one generation request; out-of-range numbers are clamped and the clamp is noted."""
    notes: list[str] = []
    text = clean_intent(intent)
    if task not in tasks:
        raise InputError(f"unknown task {str(task)[:40]!r}; choose one of: {', '.join(tasks)}")
    rel = None
    if relevance is not None and relevance != "":
        rel = _number(relevance, "relevance")
        if math.isnan(rel):
            raise InputError("relevance must be a number, got NaN")
        if relevance_range and task in relevance_range:
            lo, hi = relevance_range[task]
            rel = _clamped(rel, lo, hi, "relevance", notes)
    words = _number(length, "length")
    if not math.isfinite(words):
        raise InputError("length must be a finite number of words")
    words = int(round(_clamped(words, *LENGTH_COMMAND_RANGE, "length", notes)))
    count = _number(n, "number of samples")
    if not math.isfinite(count):
        raise InputError("the number of samples must be a whole number")
    count = int(_clamped(round(count), 1, MAX_SAMPLES, "number of samples", notes))
    seed_value = _number(seed, "seed")
    if not math.isfinite(seed_value):
        raise InputError("the seed must be a whole number")
    seed_int = int(seed_value)
    if not 0 <= seed_int < SEED_MODULUS:
        notes.append(f"seed {seed_int} taken modulo 2^32: {seed_int % SEED_MODULUS}")
        seed_int %= SEED_MODULUS
    temp = _number(temperature, "temperature")
    temp = _clamped(temp if math.isfinite(temp) else TEACHER_TEMPERATURE, 0.0, 2.0, "temperature", notes)
    p = _number(top_p, "top-p")
    p = _clamped(p if math.isfinite(p) else TEACHER_TOP_P, 0.05, 1.0, "top-p", notes)
    scale = _optional_setting(guidance, "guidance", GUIDANCE_RANGE, notes)
    repeat = _optional_setting(penalty, "repetition penalty", PENALTY_RANGE, notes)
    for name, flag in (("tuned sampling", tuned), ("word guard", word_guard)):
        if flag not in (True, False, None):
            raise InputError(f"{name} must be true or false, got {str(flag)[:40]!r}")
    return Request(text, task, rel, words, count, seed_int, temp, p, notes, scale, tuned is not False, repeat,
                   word_guard is True)


def _optional_setting(value, name: str, bounds: tuple[float, float], notes: list[str]) -> float | None:
    """A student sampling setting set by hand (clamped to ``bounds``, 1 = none), or None when not given."""
    if value is None or value == "":
        return None
    number = _number(value, name)
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number (1 = none)")
    return _clamped(number, *bounds, name, notes)
