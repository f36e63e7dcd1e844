"""Command line: ``python -m udrl intents|generate|score|datacard|augment|train|evaluate|tune|bench``.

Each command is a thin wrapper over a library function. Bad input exits with code 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line instead of usage + message
        raise CliError(f"{self.prog}: {message} (see --help)")


def _tasks(value: str) -> list[str]:
    from udrl.tasks import TASK_NAMES

    tasks = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown or not tasks:
        raise CliError(f"unknown task {', '.join(unknown) or value!r}; choose from {', '.join(TASK_NAMES)}")
    return tasks


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CliError(f"not found: {p}")
    return p


def cmd_intents(args) -> None:
    from udrl.intents import write_intents

    stats = write_intents(args.out, n_train=args.train, n_test=args.test, seed=args.seed)
    print(json.dumps(stats, indent=2))


def cmd_generate(args) -> None:
    from udrl.data import GenerationPlan, generate_corpus, read_intents
    from udrl.teacher import load_teacher

    tasks = _tasks(args.tasks)
    intents: dict[str, str] = {}
    for split in ("train", "test"):
        path = _existing(Path(args.intents) / f"{split}.txt")
        for intent in read_intents(path):
            intents.setdefault(intent, split)
    if args.samples < 1:
        raise CliError("--samples must be at least 1")
    try:
        worker = tuple(int(x) for x in args.worker.split("/"))
        assert len(worker) == 2 and 0 <= worker[0] < worker[1]
    except (ValueError, AssertionError):
        raise CliError(f"--worker must look like 0/2, got {args.worker!r}") from None
    extra = {"n_threads": args.threads} if args.backend == "llama.cpp" and args.threads else {}
    if args.backend == "transformers" and args.batch_size:
        extra["batch_size"] = args.batch_size
    teacher = load_teacher(args.backend, model=args.model, url=args.url, **extra)
    plan = GenerationPlan(intents, tuple(tasks), args.samples, seed=args.seed, worker=worker)
    written = generate_corpus(teacher, plan, args.out, shard_size=args.shard_size, limit=args.limit,
                              chunk=args.chunk, score=not args.raw)
    print(f"wrote {written} records to {args.out}")


def cmd_score(args) -> None:
    from udrl.data import score_raw

    written = score_raw(_existing(args.raw), args.out)
    print(f"scored {written} raw records into {args.out}")


def cmd_datacard(args) -> None:
    from udrl.datacard import write_data_card

    augmented = _existing(args.augmented) if args.augmented else None
    stats = write_data_card(_existing(args.corpus), args.out, figures=args.figures, augmented=augmented)
    print(json.dumps({k: stats[k] for k in ("records", "counts", "intents", "min_samples_per_pair")}, indent=2))


def cmd_augment(args) -> None:
    from udrl.augment import augment_corpus

    if args.copies < 1:
        raise CliError("--copies must be at least 1")
    stats = augment_corpus(_existing(args.corpus), args.out, copies=args.copies, seed=args.seed)
    print(json.dumps(stats, indent=2))


def cmd_train(args) -> None:
    from udrl.train import TrainConfig, train

    augmented = str(_existing(args.augmented)) if args.augmented else None
    cfg = TrainConfig(corpus=str(_existing(args.corpus)), augmented=augmented, out=args.out, init=args.init,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, n_layer=args.n_layer,
                      n_embd=args.n_embd, n_head=args.n_head, vocab_size=args.vocab_size,
                      max_steps=args.max_steps, resume=args.resume, relevance_bins=args.relevance_bins,
                      dropout=args.dropout, distil_guidance=args.distil_guidance)
    train(cfg)


def _check_intent_window(args) -> None:
    """``--skip``, ``--limit`` and ``--samples`` of ``evaluate`` and ``tune``."""
    if args.limit < 1 or args.skip < 0 or args.samples < 2:
        raise CliError("--limit must be at least 1, --skip at least 0 and --samples at least 2 "
                       "(diversity needs two samples)")


def cmd_evaluate(args) -> None:
    from udrl.evaluate import evaluate, write_report

    _check_intent_window(args)
    result = evaluate(str(_existing(args.checkpoint)), str(_existing(args.intents)), _tasks(args.tasks),
                      samples=args.samples, limit=args.limit, seed=args.seed, teacher_backend=args.teacher,
                      skip=args.skip, outside_tuning=args.outside_tuning)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    if args.report:
        write_report(result, args.report)
    from udrl.evaluate import summary_lines

    print("\n".join(summary_lines(result)))
    _refresh_card(args.checkpoint, args.json)


def _floats(value: str, flag: str, lo: float, hi: float) -> tuple[float, ...]:
    try:
        numbers = tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise CliError(f"{flag} takes comma-separated numbers, got {value!r}") from None
    if not numbers or not all(lo <= x <= hi for x in numbers):
        raise CliError(f"{flag} values must lie in {lo:g}..{hi:g}, got {value!r}")
    return numbers


def cmd_tune(args) -> None:
    from udrl.tune import tune

    _check_intent_window(args)
    grid = {"guidance_scales": _floats(args.guidance_scales, "--guidance-scales", 1.0, 5.0),
            "temperatures": _floats(args.temperatures, "--temperatures", 0.0, 2.0),
            "top_ps": _floats(args.top_ps, "--top-ps", 0.05, 1.0),
            "repetition_penalties": _floats(args.repetition_penalties, "--repetition-penalties", 1.0, 3.0)}
    result = tune(str(_existing(args.checkpoint)), str(_existing(args.intents)), _tasks(args.tasks), skip=args.skip,
                  limit=args.limit, samples=args.samples, seed=args.seed, teacher_backend=args.teacher, **grid)
    for task, best in result["best"].items():
        s, top, t = best["sampling"], best["top"], result["teacher"][task]
        print(f"{task:<15} guidance {s['guidance_scale']:.1f} temperature {s['temperature']:.2f} "
              f"top-p {s['top_p']:.2f} repetition penalty {s['repetition_penalty']:.2f}: "
              f"spearman {best['spearman']:.3f} pearson {best['pearson']:.3f} top relevance "
              f"{top['relevance_mean']:.3f} (teacher {t['relevance_mean']:.3f}) diversity {top['diversity']:.3f} "
              f"(teacher {t['diversity']:.3f}) length MAE {best.get('length_mae', float('nan')):.2f} "
              "before calibration")
    _refresh_card(args.checkpoint, str(Path(args.checkpoint) / "sampling.json"))


def cmd_bench(args) -> None:
    from udrl.bench import run_bench

    result = run_bench(str(_existing(args.checkpoint)), str(_existing(args.intents)), task=_tasks(args.task)[0],
                       prompts=args.prompts, batch_size=args.batch_size, length=args.length)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        _refresh_card(args.checkpoint, args.json)


def _refresh_card(checkpoint: str, written: str) -> None:
    """Metrics saved inside the checkpoint folder (metrics.json, bench.json) update its model card."""
    if Path(written).resolve().parent == Path(checkpoint).resolve():
        from udrl.model_card import write_model_card

        write_model_card(checkpoint)


def build_parser() -> argparse.ArgumentParser:
    from udrl.sampling import GUIDANCE_SCALES, REPETITION_PENALTIES, TEMPERATURES, TOP_PS

    parser = _Parser(prog="python -m udrl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("intents", help="build data/intents/train.txt and test.txt")
    p.add_argument("--out", default="data/intents")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=330)
    p.add_argument("--seed", type=int, default=13)
    p.set_defaults(func=cmd_intents)

    p = sub.add_parser("generate", help="teacher samples for intents x tasks, scored, as JSONL shards")
    p.add_argument("--intents", default="data/intents", help="folder with train.txt and test.txt")
    p.add_argument("--tasks", default="image_prompt,search_queries,headline")
    p.add_argument("--samples", type=int, default=2, help="samples per (intent, task)")
    p.add_argument("--backend", default="llama.cpp", choices=["llama.cpp", "transformers", "openai"])
    p.add_argument("--model", default=None, help="GGUF path, HF id or server model name")
    p.add_argument("--url", default=None, help="OpenAI-compatible base URL (or UDRL_TEACHER_URL)")
    p.add_argument("--out", default="data/distill")
    p.add_argument("--shard-size", type=int, default=2000)
    p.add_argument("--limit", type=int, default=None, help="stop after this many new samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", default="0/1", help="I/N: this process takes the I-th of N parts of the intents")
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all cores)")
    p.add_argument("--batch-size", type=int, default=None, help="transformers backend batch size")
    p.add_argument("--chunk", type=int, default=32, help="intents per scheduling block (larger on a GPU)")
    p.add_argument("--raw", action="store_true", help="skip rewards (label later with `score`)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("score", help="label raw samples with rewards into the corpus")
    p.add_argument("--raw", required=True, help="folder of raw JSONL shards")
    p.add_argument("--out", default="data/distill")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("datacard", help="write data/README.md from the corpus")
    p.add_argument("--corpus", default="data/distill")
    p.add_argument("--out", default="data/README.md")
    p.add_argument("--figures", default="data/figures")
    p.add_argument("--augmented", default=None, help="also describe the records written by `augment`")
    p.set_defaults(func=cmd_datacard)

    p = sub.add_parser("augment", help="subject-swapped, re-scored copies of the training records")
    p.add_argument("--corpus", default="data/distill")
    p.add_argument("--out", default="data/augmented")
    p.add_argument("--copies", type=int, default=8, help="variants per training record")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_augment)

    p = sub.add_parser("train", help="train the UDRL student on the corpus")
    p.add_argument("--corpus", default="data/distill")
    p.add_argument("--augmented", default=None, help="folder written by `augment`, added to training")
    p.add_argument("--out", default="checkpoints/student")
    p.add_argument("--init", default=None, help="pretrained GPT-2 id or path (default: new small GPT-2)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=192)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--relevance-bins", type=int, default=8)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from OUT/../<name>-state")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--distil-guidance", action="store_true",
                   help="continue --init (a tuned student) to sample in one pass what its guided sampling draws")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="command sweeps, controllability and teacher comparison")
    p.add_argument("--checkpoint", default="checkpoints/student")
    p.add_argument("--intents", default="data/intents/test.txt")
    p.add_argument("--tasks", default="image_prompt,search_queries,headline")
    p.add_argument("--samples", type=int, default=3, help="samples per intent and command")
    p.add_argument("--limit", type=int, default=40, help="number of intents (after the skipped ones)")
    p.add_argument("--skip", type=int, default=0, help="intents to pass over first (tune uses 60..139)")
    p.add_argument("--outside-tuning", action="store_true",
                   help="leave out the intents `tune` chose the checkpoint's settings on (before --skip/--limit)")
    p.add_argument("--teacher", default="llama.cpp", choices=["llama.cpp", "transformers", "none"])
    p.add_argument("--json", default="runs/eval.json")
    p.add_argument("--report", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tune", help="choose each task's sampling settings (guidance, temperature, top-p) and "
                                    "calibrate its length command")
    p.add_argument("--checkpoint", default="checkpoints/student")
    p.add_argument("--intents", default="data/intents/test.txt")
    p.add_argument("--tasks", default="image_prompt,search_queries,headline")
    p.add_argument("--skip", type=int, default=60, help="intents to pass over (those `evaluate --limit` uses)")
    p.add_argument("--limit", type=int, default=80, help="number of tuning intents after the skipped ones")
    p.add_argument("--samples", type=int, default=3,
                   help="samples per intent and command; diversity (distinct-2 within an intent's samples) "
                        "falls as samples are added, so use as many as the evaluation does")
    p.add_argument("--teacher", default="llama.cpp", choices=["llama.cpp", "transformers"])
    p.add_argument("--guidance-scales", default=",".join(map(str, GUIDANCE_SCALES)),
                   help="grid (1 = no guidance: the grid for a student trained with --distil-guidance)")
    p.add_argument("--temperatures", default=",".join(map(str, TEMPERATURES)), help="grid")
    p.add_argument("--top-ps", default=",".join(map(str, TOP_PS)), help="grid")
    p.add_argument("--repetition-penalties", default=",".join(map(str, REPETITION_PENALTIES)),
                   help="grid (1 = none; applied to the tokens the output already holds)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("bench", help="student vs teacher speed, side by side")
    p.add_argument("--checkpoint", default="checkpoints/student")
    p.add_argument("--intents", default="data/intents/test.txt")
    p.add_argument("--task", default="image_prompt")
    p.add_argument("--prompts", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--length", type=int, default=None, help="length command (default: teacher median)")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from udrl.student import CheckpointError
    from udrl.teacher import TeacherUnavailable

    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, TeacherUnavailable, CheckpointError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
