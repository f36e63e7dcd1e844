"""The UDRL student: a small GPT-2 that writes an output for (intent, task, relevance, length) commands.

``load_student(path).generate(intents, task, relevance=, length=, n=, seed=)`` is the one entry point used
by evaluation, the benchmark and the app. Decoding runs on :class:`udrl.student.decoding.FastGPT2`.
"""

from __future__ import annotations

import atexit
import copy
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from udrl.config import MAX_INTENT_CHARS
from udrl.student.encoding import EOS, PAD, SEP, CommandEncoding
from udrl.student.slots import Slots
from udrl.student.sampling import LengthCalibration, Sampling, load_length_calibration, load_sampling
from udrl.tasks import get_task


class CheckpointError(RuntimeError):
    """A student checkpoint is missing or unreadable; the message says how to fix it."""


@dataclass
class StudentOutput:
    text: str
    latency_ms: float
    tokens: int
    command: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)


def _threads() -> None:
    # Two cores: more threads than cores only adds contention between the app's workers.
    torch.set_num_threads(int(os.environ.get("UDRL_THREADS", min(2, os.cpu_count() or 1))))


class Student:
    """A GPT-2 checkpoint with its tokenizer and command encoding.

    Decoding: one prompt at a time runs on llama.cpp over the checkpoint's GGUF export (the lowest
    latency here); several prompts run batched on :class:`FastGPT2`. ``UDRL_DECODER=torch`` forces the
    latter everywhere.
    """

    def __init__(self, model, tokenizer, encoding: CommandEncoding, path: str | Path | None = None,
                 gguf_path: str | Path | None = None, sampling: dict[str, Sampling] | None = None,
                 length_calibration: dict[str, LengthCalibration] | None = None):
        from udrl.student.decoding import FastGPT2

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.encoding = encoding
        self.sampling = sampling or {}
        self.length_calibration = length_calibration or {}
        self.path = str(path) if path else None
        self.fast = FastGPT2(model)
        self.single = None
        if gguf_path is not None and os.environ.get("UDRL_DECODER", "auto") != "torch":
            from udrl.student.decoding import LlamaCppGPT2

            try:
                self.single = LlamaCppGPT2(str(gguf_path), model.config.n_positions, torch.get_num_threads())
                atexit.register(self.single.close)
            except (ValueError, OSError) as err:  # decoding still works, batched on PyTorch
                warnings.warn(f"llama.cpp cannot load {gguf_path} ({err}); decoding with PyTorch", stacklevel=2)
        self.slots = Slots(tokenizer, encoding.slots)
        self.eos_id = tokenizer.convert_tokens_to_ids(EOS)
        self.pad_id = tokenizer.convert_tokens_to_ids(PAD)
        self.parameters = sum(p.numel() for p in model.parameters())
        self.word_guard = False
        self._foreign: dict[str, list[int]] = {}

    @property
    def version(self) -> str:
        return f"{Path(self.path).name if self.path else 'student'}@{self.parameters / 1e6:.1f}M"

    def prompt_ids(self, intent: str, task: str, relevance: float, length: float) -> list[int]:
        """The command tokens, the intent and the separator; an intent too long for half the position table
        (the other half is the answer's) loses its end, never the command."""
        def ids(text: str) -> list[int]:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

        head, tail = ids(self.encoding.prefix(task, relevance, length)), ids(SEP)
        body = ids(self.encoding.intent_text(intent[:MAX_INTENT_CHARS]))
        return head + body[: self.model.config.n_positions // 2 - len(head) - len(tail)] + tail

    def with_length_calibration(self, calibration: dict[str, LengthCalibration]) -> Student:
        """This student sending length requests through ``calibration`` instead (the model is shared)."""
        other = copy.copy(self)
        other.length_calibration = dict(calibration)
        return other

    def with_word_guard(self, on: bool = True) -> Student:
        """This student decoding with the word guard on (or off) unless a call says otherwise."""
        other = copy.copy(self)
        other.word_guard = on
        return other

    def foreign_tokens(self, task: str) -> list[int]:
        """The tokens holding a character of another task's form (:attr:`udrl.tasks.Task.foreign`), which
        the task's outputs never draw: a headline is one phrase, not search queries joined by ";"."""
        if task not in self._foreign:
            form = get_task(task)
            self._foreign[task] = [i for i in range(len(self.tokenizer)) if form.foreign
                                   and form.takes_foreign_form(self.tokenizer.decode([i]))]
        return self._foreign[task]

    def sampling_for(self, task: str) -> Sampling:
        """The task's sampling settings saved with the checkpoint (defaults when it has none)."""
        return self.sampling.get(task, Sampling())

    def length_command(self, task: str, words: int) -> int:
        """The length token to send for a request of ``words`` words: read off the task's measured
        calibration when the checkpoint has one (:class:`udrl.student.sampling.LengthCalibration`)."""
        calibration = self.length_calibration.get(task)
        return words if calibration is None else calibration.token_for(words)

    def generate(self, intents: list[str], task: str, relevance: float | None = None,
                 length: float | None = None, n: int = 1, temperature: float | None = None,
                 top_p: float | None = None, guidance_scale: float | None = None, seed: int = 0,
                 max_new_tokens: int = 96, repetition_penalty: float | None = None,
                 word_guard: bool | None = None, sibling_penalty: float | None = None) -> list[list[StudentOutput]]:
        """``n`` outputs per intent under one command, batched; the same seed gives the same outputs.

        ``relevance`` is in reward units (clamped to the checkpoint's range; default: the task's top),
        ``length`` in words (clamped to 5..60; default: the teacher's median for the task; sent as the
        token :meth:`length_command` picks for it). Sampling settings left at ``None`` take the
        checkpoint's values for the task (:meth:`sampling_for`). ``word_guard`` redraws tokens that would
        leave real words, write a word twice in a row or end on an open phrase ("for an"), and carries a
        begun subject word through (:mod:`udrl.student.guard`; default: off, or on for a student from
        :meth:`with_word_guard`).
        ``sibling_penalty`` keeps an intent's ``n`` outputs from repeating each other's token pairs
        (:mod:`udrl.student.variety`).
        """
        word_guard = self.word_guard if word_guard is None else word_guard
        enc = self.encoding
        enc.check_task(task)
        rel = enc.relevance_range[task][1] if relevance is None else enc.clamp_relevance(task, relevance)
        words = enc.length_median[task] if length is None else enc.clamp_length_command(length)
        sampling = self.sampling_for(task).replace(temperature, top_p, guidance_scale, repetition_penalty,
                                                   sibling_penalty)
        sent = self.length_command(task, words)
        prompts = [self.prompt_ids(intent, task, rel, sent) for intent in intents for _ in range(n)]
        reference = enc.guidance_reference(task, rel)
        references = None
        if sampling.guidance_scale != 1.0 and reference is not None:
            references = [self.prompt_ids(intent, task, reference, sent) for intent in intents for _ in range(n)]
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(int(seed) % (2**63))
        guard = {}
        if word_guard:
            from udrl.student.guard import WordGuard

            guard["guard"] = WordGuard.for_rows(self.tokenizer, self.eos_id, [i for i in intents for _ in range(n)],
                                                self.slots)
        decoder = self.single if self.single is not None and len(prompts) == 1 else self.fast
        token_lists = decoder.generate(prompts, max_new_tokens, self.eos_id, self.pad_id,
                                       temperature=sampling.temperature, top_p=sampling.top_p,
                                       generator=generator, references=references,
                                       guidance_scale=sampling.guidance_scale,
                                       repetition_penalty=sampling.repetition_penalty, group=n,
                                       sibling_penalty=sampling.sibling_penalty,
                                       banned=self.foreign_tokens(task), **guard)
        texts = [self.slots.decode(ids, intents[i // n]) for i, ids in enumerate(token_lists)]
        elapsed_ms = (time.perf_counter() - started) * 1000
        command = {"task": task, "relevance": rel, "relevance_token": enc.relevance_bin(task, rel), "length": words,
                   "length_token": sent}
        settings = {**asdict(sampling), "word_guard": bool(word_guard)}
        outs = [StudentOutput(t.strip(), elapsed_ms / len(prompts), len(ids), command, settings)
                for t, ids in zip(texts, token_lists)]
        return [outs[i * n : (i + 1) * n] for i in range(len(intents))]


def check_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder, or a CheckpointError saying how to get one (no model is loaded)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"no student checkpoint at {path}: train one with `python -m udrl train` "
                              "or restore checkpoints/student from git")
    return path


def load_student(path: str | Path = "checkpoints/student") -> Student:
    """Load a checkpoint written by ``udrl.train`` (``save_pretrained`` + ``udrl.json``)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    _threads()
    path = check_checkpoint(path)
    try:
        encoding = CommandEncoding.load(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = GPT2LMHeadModel.from_pretrained(path)
        sampling, calibration = load_sampling(path), load_length_calibration(path)
        gguf = _gguf_for(path, model, tokenizer)
        return Student(model, tokenizer, encoding, path, gguf, sampling, calibration)
    except Exception as err:  # a torn download or a hand-edited file: say which and how to fix
        raise CheckpointError(f"student checkpoint at {path} is unreadable ({type(err).__name__}: "
                              f"{str(err)[:200]}); restore it with `git checkout -- {path}`") from None


def _gguf_for(path: Path, model, tokenizer) -> Path | None:
    """The checkpoint's GGUF export for llama.cpp, written (beside it, or in a temp dir) when missing."""
    from udrl.student.gguf import GGUF_NAME, export_gguf

    if os.environ.get("UDRL_DECODER", "auto") == "torch":
        return None
    target = path / GGUF_NAME
    weights = path / "model.safetensors"
    if target.is_file() and (not weights.is_file() or target.stat().st_mtime >= weights.stat().st_mtime):
        return target
    if not os.access(path, os.W_OK):
        target = Path(tempfile.mkdtemp(prefix="udrl-gguf-")) / GGUF_NAME
    return export_gguf(model, tokenizer, target)
