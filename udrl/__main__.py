"""Command line: ``python -m udrl <stage> [--option value ...]``, one stage of the pipeline per call.

Each stage's options are the fields of its dataclass in :mod:`udrl.config`, with the same defaults as the
library function that runs it. Bad input exits with code 2 and one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _error(self, message: str) -> None:  # one clear line instead of usage + message
    raise CliError(f"{self.prog}: {message} (see --help)")


class _Parser(argparse.ArgumentParser):
    error = _error


def _stage_parser_class():
    from transformers import HfArgumentParser

    return type("_StageParser", (HfArgumentParser,), {"error": _error})


def build_parser() -> argparse.ArgumentParser:
    from udrl.config import STAGES

    parser = _Parser(prog="python -m udrl", description=__doc__)
    sub = parser.add_subparsers(dest="stage", required=True, parser_class=_stage_parser_class())
    for name, (config, help_text) in STAGES.items():
        sub.add_parser(name, dataclass_types=[config], help=help_text, description=help_text)
    return parser


def parse(argv: list[str] | None = None):
    """(stage name, its config) from command-line arguments."""
    from udrl.config import STAGES

    args = build_parser().parse_args(argv)
    config = STAGES[args.stage][0]
    return args.stage, config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config)})


def run(stage: str, cfg) -> None:
    """Run one stage and print what it reports."""
    if stage == "intents":
        from udrl.intents import make_intents

        print(json.dumps(make_intents(cfg), indent=2))
    elif stage == "generate":
        from udrl.generate import generate

        print(f"wrote {generate(cfg)} records to {cfg.out}")
    elif stage == "score":
        from udrl.generate import score

        print(f"scored {score(cfg)} raw records into {cfg.out}")
    elif stage == "datacard":
        from udrl.cards import datacard

        stats = datacard(cfg)
        print(json.dumps({k: stats[k] for k in ("records", "counts", "intents", "min_samples_per_pair")}, indent=2))
    elif stage == "augment":
        from udrl.augment import augment

        print(json.dumps(augment(cfg), indent=2))
    elif stage == "rollouts":
        from udrl.rollouts import rollouts

        print(json.dumps(rollouts(cfg), indent=2))
    elif stage == "feedback":
        from udrl.feedback import feedback

        print(json.dumps(feedback(cfg), indent=2))
    elif stage == "train":
        from udrl.train import train

        train(cfg)
    elif stage == "evaluate":
        from udrl.evaluate import evaluate, summary_lines

        print("\n".join(summary_lines(evaluate(cfg))))
    elif stage == "tune":
        from udrl.tune import summary_lines, tune

        print("\n".join(summary_lines(tune(cfg))))
    elif stage == "bench":
        from udrl.bench import bench, format_table

        print(format_table(bench(cfg)))
    elif stage == "sidebyside":
        from udrl.sidebyside import side_by_side

        key = side_by_side(cfg)
        print(f"wrote {len(key['items'])} items to {cfg.out}: pairs.md (blind), key.json, examples.md")
    elif stage == "verdicts":
        from udrl.sidebyside import score_verdicts, verdict_lines

        print("\n".join(verdict_lines(score_verdicts(cfg))))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from udrl.student import CheckpointError
    from udrl.teacher import TeacherUnavailable

    try:
        run(*parse(argv))
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, TeacherUnavailable, CheckpointError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
