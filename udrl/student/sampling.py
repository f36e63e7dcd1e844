"""Sampling settings of a student checkpoint, per task: temperature, top-p, command guidance and a
repetition penalty.

Command guidance draws each token from ``log p(.|reference) + s * (log p(.|command) - log p(.|reference))``
where the reference is the opposite relevance command (see ``CommandEncoding.reference_relevance``):
s > 1 widens the gap between what high and low commands produce. The repetition penalty (CTRL's, as
transformers' ``RepetitionPenaltyLogitsProcessor``) lowers the logits of tokens the output already
holds; the prompt is not counted, so the intent's words stay free to use. The sibling penalty, by the same
rule, lowers tokens that would repeat a token pair another output of the same intent has written
(:mod:`udrl.student.variety`), so that n outputs asked at once differ. ``python -m udrl tune`` chooses
the settings by measurement on intents the evaluation does not use and saves them as ``sampling.json``
beside the checkpoint; without that file every task samples at ``DEFAULT_TEMPERATURE`` and ``DEFAULT_TOP_P``,
unguided and unpenalised.

``tune`` also measures how many words each length command comes to at the chosen settings and saves that
curve (:class:`LengthCalibration`): a request for n words then sends the command measured to give n words.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from udrl.config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from udrl.student.encoding import CommandEncoding

SAMPLING_FILE = "sampling.json"


@dataclass(frozen=True)
class Sampling:
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    guidance_scale: float = 1.0
    repetition_penalty: float = 1.0  # 1 = none
    sibling_penalty: float = 1.0  # 1 = none; on repeating a token pair of another output of the intent

    def __post_init__(self):
        values = (self.temperature, self.top_p, self.guidance_scale, self.repetition_penalty, self.sibling_penalty)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ValueError(f"sampling settings must be finite numbers, got {values}")
        if (self.temperature < 0 or not 0 < self.top_p <= 1 or self.guidance_scale < 0
                or self.repetition_penalty <= 0 or self.sibling_penalty <= 0):
            raise ValueError("temperature must be >= 0, top_p in (0, 1], guidance_scale >= 0, "
                             f"repetition_penalty and sibling_penalty > 0; got {values}")

    def replace(self, temperature: float | None = None, top_p: float | None = None,
                guidance_scale: float | None = None, repetition_penalty: float | None = None,
                sibling_penalty: float | None = None) -> Sampling:
        """These settings with the given values (``None`` keeps a value)."""
        given = {"temperature": temperature, "top_p": top_p, "guidance_scale": guidance_scale,
                 "repetition_penalty": repetition_penalty, "sibling_penalty": sibling_penalty}
        return dataclasses.replace(self, **{k: float(v) for k, v in given.items() if v is not None})


def read_sampling_record(directory: str | Path) -> dict | None:
    """The whole ``sampling.json`` of a checkpoint (settings, length calibration, how they were chosen);
    None when it has none. Unparsable JSON raises ``ValueError``."""
    path = Path(directory, SAMPLING_FILE)
    return json.loads(path.read_text()) if path.is_file() else None


def load_sampling(directory: str | Path) -> dict[str, Sampling]:
    """Task -> settings saved with a checkpoint; empty when it has none (the defaults apply)."""
    path = Path(directory, SAMPLING_FILE)
    try:
        data = read_sampling_record(directory)
        return {} if data is None else {task: Sampling(**values) for task, values in data["tasks"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is unreadable ({type(err).__name__}: {err}); rerun `python -m udrl tune` "
                         "or delete it to sample with the defaults") from None


@dataclass(frozen=True)
class LengthCalibration:
    """Mean words a task's outputs came to per length command (measured by ``tune``), read backwards: the
    command for a requested length is interpolated on this curve, one word per command past its ends."""

    commands: tuple[float, ...]
    words: tuple[float, ...]

    def __post_init__(self):
        if len(self.commands) != len(self.words) or not self.commands:
            raise ValueError("a length calibration needs as many measured lengths as commands, at least one")
        if not all(math.isfinite(v) for v in self.commands + self.words):
            raise ValueError(f"length calibration values must be finite numbers, got {self.points()}")
        if list(self.commands) != sorted(set(self.commands)):
            raise ValueError(f"length calibration commands must increase, got {self.commands}")

    @classmethod
    def from_points(cls, points: list[list[float]]) -> LengthCalibration:
        """From ``[[command, mean words], ...]`` as saved in ``sampling.json``."""
        ordered = sorted((float(c), float(w)) for c, w in points)
        return cls(tuple(c for c, _ in ordered), tuple(w for _, w in ordered))

    def points(self) -> list[list[float]]:
        return [[c, w] for c, w in zip(self.commands, self.words)]

    @functools.cached_property
    def _increasing(self) -> tuple[np.ndarray, np.ndarray]:
        # the mean length grows with the command; a dip between neighbours is sampling noise, so only the
        # points that set a new maximum are kept (np.interp needs increasing x)
        kept = [i for i, w in enumerate(self.words) if w > max(self.words[:i], default=-math.inf)]
        return np.array(self.commands)[kept], np.array(self.words)[kept]

    def command_for(self, words: float) -> float:
        """The length command expected to give ``words`` words on average."""
        commands, measured = self._increasing
        if words <= measured[0]:
            return float(commands[0] + words - measured[0])
        if words >= measured[-1]:
            return float(commands[-1] + words - measured[-1])
        return float(np.interp(words, measured, commands))

    def token_for(self, words: float) -> int:
        """The length token to send for a request of ``words`` words."""
        return CommandEncoding.clamp_length(self.command_for(words))


def load_length_calibration(directory: str | Path) -> dict[str, LengthCalibration]:
    """Task -> length calibration saved by ``tune`` with a checkpoint; empty when it has none."""
    path = Path(directory, SAMPLING_FILE)
    try:
        data = (read_sampling_record(directory) or {}).get("length_calibration", {})
        return {task: LengthCalibration.from_points(points) for task, points in data.items()}
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} has an unreadable length calibration ({type(err).__name__}: {err}); rerun "
                         "`python -m udrl tune` or delete it to sample with the defaults") from None


def save_sampling(directory: str | Path, settings: dict[str, Sampling], provenance: dict,
                  calibration: dict[str, LengthCalibration] | None = None) -> Path:
    """Write ``sampling.json``: the settings, the length calibration if any and how they were chosen
    (``provenance``)."""
    path = Path(directory, SAMPLING_FILE)
    data = {"tasks": {task: asdict(s) for task, s in settings.items()}, **provenance}
    if calibration:
        data["length_calibration"] = {task: c.points() for task, c in calibration.items()}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
