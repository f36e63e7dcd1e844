"""UDRL command encoding, shared by training and inference.

A command is (task, relevance, length). Relevance is cut into per-task quantile bins of the corpus's
achieved relevance (each bin token is seen equally often in training); length is one token per word count.
The encoding is fitted once on the training split and saved as ``udrl.json`` beside the checkpoint, so the
supported range lives in exactly one place.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from udrl.config import LENGTH_COMMAND_RANGE
from udrl.student.slots import delexicalised, marked_intent, slot_tokens, slot_words
from udrl.tasks import TASK_NAMES

ENCODING_FILE = "udrl.json"
LENGTH_MIN, LENGTH_MAX = 1, 64  # length tokens; a user's command is clamped to LENGTH_COMMAND_RANGE
SEP, EOS, PAD = "<|sep|>", "<|endoftext|>", "<|pad|>"


def task_token(task: str) -> str:
    return f"<|task:{task}|>"


def relevance_token(b: int) -> str:
    return f"<|rel:{b}|>"


def length_token(n: int) -> str:
    return f"<|len:{n}|>"


@dataclass
class CommandEncoding:
    """Per-task relevance bin edges and the supported command ranges."""

    relevance_bins: int
    relevance_edges: dict[str, list[float]]  # task -> inner edges (relevance_bins - 1 values)
    relevance_range: dict[str, list[float]]  # task -> [low, high] the slider may ask for
    length_range: dict[str, list[int]] = field(default_factory=dict)  # task -> typical [low, high] words
    length_median: dict[str, int] = field(default_factory=dict)
    relevance_median: dict[str, float] = field(default_factory=dict)
    # 1: the intent follows the command tokens directly; 2: after a space, so that each intent word is
    # the same BPE token as the word inside an output (" cat", not "cat"), which makes copying it easier
    version: int = 1
    # intent-word slots (:mod:`udrl.student.slots`): 0, or how many subject words of an intent get a token
    slots: int = 0

    @classmethod
    def fit(cls, records: Sequence[dict], bins: int = 10) -> CommandEncoding:
        """Fit bin edges and ranges on training records (quantiles of achieved rewards per task)."""
        edges, ranges, lengths, length_medians, rel_medians = {}, {}, {}, {}, {}
        for task in TASK_NAMES:
            rel = np.array([r["rewards"]["relevance"] for r in records if r["task"] == task], dtype=float)
            if rel.size == 0:
                continue
            qs = np.quantile(rel, np.linspace(0, 1, bins + 1))
            edges[task] = [round(float(q), 4) for q in qs[1:-1]]
            ranges[task] = [round(float(np.quantile(rel, 0.02)), 3), round(float(np.quantile(rel, 0.98)), 3)]
            rel_medians[task] = round(float(np.median(rel)), 4)
            n = np.array([r["rewards"]["length"] for r in records if r["task"] == task], dtype=float)
            lengths[task] = [int(np.quantile(n, 0.05)), int(np.quantile(n, 0.95))]
            length_medians[task] = int(np.median(n))
        if not edges:
            raise ValueError("no training records to fit the command encoding on")
        return cls(bins, edges, ranges, lengths, length_medians, rel_medians, version=2)

    # -- value -> token ------------------------------------------------------------------------------
    def tasks(self) -> list[str]:
        return list(self.relevance_edges)

    def check_task(self, task: str) -> None:
        if task not in self.relevance_edges:
            raise ValueError(f"task {task!r} is not supported by this checkpoint; choose one of: "
                             f"{', '.join(self.relevance_edges)}")

    def clamp_relevance(self, task: str, value: float) -> float:
        """The value clamped into the task's supported range (NaN becomes the median)."""
        self.check_task(task)
        lo, hi = self.relevance_range[task]
        if value is None or not math.isfinite(float(value)):
            return self.relevance_median[task]
        return min(max(float(value), lo), hi)

    def reference_relevance(self, task: str, value: float) -> float:
        """The opposite command that guidance contrasts ``value`` with: its mirror image in the range."""
        lo, hi = self.relevance_range[task]
        return lo + hi - self.clamp_relevance(task, value)

    def guidance_reference(self, task: str, value: float) -> float | None:
        """:meth:`reference_relevance`, or None when it falls in the bin of ``value``: then both prompts
        are the same and guidance changes nothing."""
        value = self.clamp_relevance(task, value)
        reference = self.reference_relevance(task, value)
        return None if self.relevance_bin(task, reference) == self.relevance_bin(task, value) else reference

    def relevance_steps(self, task: str) -> list[float]:
        """One relevance command per token the task's range reaches, low to high: the range's low end, the
        middle of each bin between, and its high end (alone when the range lies in one bin). Two commands in
        one bin send the model the same token, so a sweep or a slider step between them changes nothing but
        the guidance reference."""
        self.check_task(task)
        lo, hi = self.relevance_range[task]
        edges = self.relevance_edges[task]
        first, last = self.relevance_bin(task, lo), self.relevance_bin(task, hi)
        if first == last:
            return [hi]
        steps = [lo]
        for b in range(first + 1, last):
            middle = (edges[b - 1] + edges[b]) / 2
            if self.relevance_bin(task, middle) != b:  # tied edges: no value reaches this bin
                continue
            rounded = round(middle, 4)  # for reading, unless rounding would move it out of its bin
            steps.append(rounded if self.relevance_bin(task, rounded) == b else middle)
        return steps + [hi]

    def relevance_bin(self, task: str, value: float) -> int:
        """Bin index (0 = least relevant) of a relevance value for ``task``."""
        self.check_task(task)
        return bisect_right(self.relevance_edges[task], float(value))

    @staticmethod
    def clamp_length(value: float) -> int:
        """Word count clamped to the length tokens (achieved values; commands go through :meth:`clamp_length_command`)."""
        if value is None or not math.isfinite(float(value)):
            raise ValueError("length must be a number of words")
        return int(min(max(round(float(value)), LENGTH_MIN), LENGTH_MAX))

    @classmethod
    def clamp_length_command(cls, value: float) -> int:
        """A user's length command clamped to ``LENGTH_COMMAND_RANGE`` words."""
        lo, hi = LENGTH_COMMAND_RANGE
        return min(max(cls.clamp_length(value), lo), hi)

    def prefix(self, task: str, relevance: float, length: float) -> str:
        """Control-token prefix of one command; relevance is in reward units (cosine similarity)."""
        return (task_token(task) + relevance_token(self.relevance_bin(task, relevance))
                + length_token(self.clamp_length(length)))

    def intent_text(self, intent: str) -> str:
        """The intent as it follows the command tokens in this encoding's prompt format."""
        if self.slots:
            intent = marked_intent(intent.strip(), self.slots)
        return " " + intent.strip() if self.version >= 2 else intent

    def special_tokens(self) -> list[str]:
        """Every control token, in a fixed order (tokenizers add them with these ids)."""
        return ([PAD, SEP] + [task_token(t) for t in TASK_NAMES]
                + [relevance_token(b) for b in range(self.relevance_bins)]
                + [length_token(n) for n in range(LENGTH_MIN, LENGTH_MAX + 1)] + slot_tokens(self.slots))

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        Path(directory, ENCODING_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> CommandEncoding:
        path = Path(directory, ENCODING_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: not a udrl student checkpoint")
        return cls(**json.loads(path.read_text()))


def training_text(encoding: CommandEncoding, record: dict) -> tuple[str, str]:
    """(prompt, completion) of a record relabelled with what it achieved (hindsight)."""
    r = record["rewards"]
    prompt = prompt_text(encoding, record["intent"], record["task"], r["relevance"], r["length"])
    output = " " + record["output"]
    if encoding.slots:
        output = delexicalised(output, slot_words(record["intent"], encoding.slots))
    return prompt, output + EOS


def prompt_text(encoding: CommandEncoding, intent: str, task: str, relevance: float, length: float) -> str:
    """The student's prompt for a user's command."""
    return encoding.prefix(task, relevance, length) + encoding.intent_text(intent) + SEP
