"""Task registry: what the teacher is asked to write, with few-shot examples and output clean-up.

Each task is one entry in ``TASKS``; everything else (teacher prompts, student control tokens, the app's
task dropdown) reads the names from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class Task:
    """One kind of output the teacher writes for a design intent."""

    name: str
    label: str
    instruction: str
    examples: tuple[tuple[str, str], ...]
    max_new_tokens: int
    min_words: int = 1
    stop: tuple[str, ...] = field(default=("\n",))
    foreign: str = ""  # characters of another task's form that no output of this task holds

    def takes_foreign_form(self, output: str) -> bool:
        """Whether ``output`` holds a character of another task's form (a headline joining phrases with the
        search queries' ";")."""
        return any(c in output for c in self.foreign)

    def messages(self, intent: str) -> list[dict[str, str]]:
        """Chat messages for the teacher: system instruction, few-shot turns, then the intent."""
        msgs = [{"role": "system", "content": self.instruction}]
        for example_intent, example_output in self.examples:
            msgs.append({"role": "user", "content": f"Intent: {example_intent}"})
            msgs.append({"role": "assistant", "content": example_output})
        msgs.append({"role": "user", "content": f"Intent: {intent}"})
        return msgs


TASKS: dict[str, Task] = {
    "image_prompt": Task(
        name="image_prompt",
        label="Text-to-image prompt",
        instruction=(
            "You write one detailed text-to-image prompt for a graphic design. Describe the subject, "
            "setting, colors, lighting and style in one line of 20 to 45 words. Reply with the prompt only."
        ),
        examples=(
            (
                "lost cat poster",
                "A fluffy orange tabby cat sitting on a wooden porch at dusk, soft warm light, "
                "clean poster layout with bold lettering space, photorealistic, shallow depth of field",
            ),
            (
                "holiday sale",
                "Festive flat illustration of gift boxes and pine branches on a deep red background, "
                "gold confetti, cheerful winter mood, bright studio lighting, modern retail banner style",
            ),
            (
                "yoga retreat in the mountains",
                "Calm woman doing a yoga pose on a cliff above misty pine mountains at sunrise, pastel "
                "sky, soft natural light, minimal serene composition, wide angle travel photography",
            ),
        ),
        max_new_tokens=64,
        min_words=5,
    ),
    "search_queries": Task(
        name="search_queries",
        label="Template search queries",
        instruction=(
            "You write three short search queries a designer would type to find templates for the "
            "intent. Separate them with semicolons on one line. Reply with the queries only."
        ),
        examples=(
            ("lost cat poster", "missing pet poster; lost cat flyer template; found animal notice"),
            ("holiday sale", "christmas sale banner; holiday discount flyer; winter promo social post"),
            ("bakery grand opening", "bakery opening flyer; new cafe announcement; pastry shop poster"),
        ),
        max_new_tokens=40,
        min_words=3,
    ),
    "headline": Task(
        name="headline",
        label="Marketing headline",
        instruction=(
            "You write one short, catchy marketing headline of 3 to 10 words for the intent. "
            "Reply with the headline only."
        ),
        examples=(
            ("lost cat poster", "Have You Seen Our Whiskers?"),
            ("holiday sale", "Unwrap Big Savings This Holiday Season"),
            ("bakery grand opening", "Fresh From the Oven: We're Finally Open!"),
        ),
        max_new_tokens=24,
        min_words=2,
        foreign=";",  # the search queries' separator: a headline is one phrase, not a list of queries
    ),
}

TASK_NAMES: tuple[str, ...] = tuple(TASKS)

_LABEL = re.compile(
    r"^\s*(?:[-*•#>\d.)\s]+)?(?:(?:image\s+)?prompt|headline|title|queries|query|search queries|answer|output"
    r"|intent|assistant|response)\s*[:\-–]\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’`«»"
_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i cannot|i can't|i can not|as an ai|i'm unable|i am unable|i apologi[sz]e)\b",
    re.IGNORECASE,
)


def get_task(name: str) -> Task:
    """The task called ``name``; a ValueError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASK_NAMES)}") from None


ECHO_WORDS = 3  # a copied example phrase of this many words, two of them content words, is an echo


@lru_cache(maxsize=None)
def _example_phrases(task: str) -> frozenset[tuple[str, ...]]:
    from udrl.intents import FUNCTION_WORDS
    from udrl.rewards import word_ngrams

    return frozenset(p for _, output in get_task(task).examples for p in word_ngrams(output, ECHO_WORDS)
                     if sum(w not in FUNCTION_WORDS for w in p) >= 2)


def echoes_example(task: str, intent: str, output: str) -> bool:
    """Whether ``output`` copies a phrase of the task's few-shot examples that its intent does not call for
    (the teacher's "new cafe announcement" for an avocado sale, "mountains at sunrise" for a milk shake):
    a leak of the prompt, which a student would learn as a stock phrase."""
    from udrl.rewards import phrases_beyond

    return not _example_phrases(task).isdisjoint(phrases_beyond(intent, output, ECHO_WORDS))


def _strip_wrapping(text: str) -> str:
    text = _LABEL.sub("", text.strip()).strip()
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text.strip(_QUOTES + " ").strip()


def _dedupe_phrases(text: str) -> str:
    """Drop repeated comma-separated phrases, a habit of small models ("soft light, soft light, ...")."""
    seen: set[str] = set()
    kept = []
    for phrase in text.split(","):
        key = phrase.strip().lower()
        if key and key not in seen:
            seen.add(key)
            kept.append(phrase.strip())
    return ", ".join(kept)


def clean_output(task: str | Task, raw: str, truncated: bool = False) -> tuple[str, list[str]]:
    """Clean a raw teacher answer; return the text and flags (``empty``, ``refusal``, ``short``).

    Keeps the first non-empty line, removes labels such as ``Headline:``, list bullets and stray quotes,
    and repeated phrases. For ``search_queries`` the queries are normalised to ``a; b; c`` (at most
    three). A ``truncated`` answer (cut by the token limit) loses its unfinished last phrase.
    """
    t = task if isinstance(task, Task) else get_task(task)
    lines = [_strip_wrapping(line) for line in raw.replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line]
    flags: list[str] = []
    if t.name == "search_queries":
        # Small models often put one query per line or separate them by commas: gather up to three.
        parts: list[str] = []
        for line in lines[:3]:
            pieces = re.split(r"\s*;\s*", line) if ";" in line else [line]
            parts.extend(_strip_wrapping(p) for p in pieces)
            if len(parts) >= 3:
                break
        parts = [p.rstrip(".") for p in parts if p][:3]
        text = "; ".join(parts)
    else:
        text = lines[0] if lines else ""
        if truncated and ("," in text or "." in text[:-1]):
            cut = max(text.rfind(","), text.rfind(".", 0, len(text) - 1))
            if len(text[:cut].split()) >= t.min_words:
                text = text[:cut]
        text = _dedupe_phrases(text)
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        flags.append("empty")
    elif _REFUSAL.search(text):
        flags.append("refusal")
    if text and len(text.split()) < t.min_words:
        flags.append("short")
    return text, flags
