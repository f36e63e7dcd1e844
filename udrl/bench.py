"""Side-by-side speed: the student and the teacher on the same intents and task, each warmed up.

Each model is measured in its own process, so its peak RSS is its own. Latency is end to end (tokenize,
generate, decode) for one prompt at a time; batch throughput is the student's at batch 32.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import time

from udrl.data import read_intents


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _single_stream(generate_one, intents: list[str], warmup: int = 3) -> dict:
    for intent in intents[:warmup]:
        generate_one(intent)
    latencies, tokens, words = [], 0, []
    for intent in intents:
        started = time.perf_counter()
        n_tokens, text = generate_one(intent)
        latencies.append((time.perf_counter() - started) * 1000)
        tokens += n_tokens
        words.append(len(text.split()))
    total_s = sum(latencies) / 1000
    return {"p50_ms": round(statistics.median(latencies), 2), "p95_ms": round(_percentile(latencies, 0.95), 2),
            "tokens_per_s": round(tokens / total_s, 1), "mean_tokens": round(tokens / len(intents), 1),
            "mean_words": round(statistics.mean(words), 1), "prompts": len(intents)}


def _student_worker(checkpoint: str, intents: list[str], task: str, length: int | None, batch_size: int,
                    queue) -> None:
    from udrl.student import load_student

    student = load_student(checkpoint)

    def one(intent: str) -> tuple[int, str]:
        out = student.generate([intent], task, length=length, n=1, seed=0)[0][0]
        return out.tokens, out.text

    result = _single_stream(one, intents)
    batch = (intents * (batch_size // len(intents) + 1))[:batch_size]
    student.generate(batch, task, length=length, seed=1)  # warm-up at this batch size
    runs = []
    for r in range(3):
        started = time.perf_counter()
        outs = student.generate(batch, task, length=length, seed=r)
        elapsed = time.perf_counter() - started
        runs.append((elapsed, sum(o[0].tokens for o in outs)))
    elapsed = sum(e for e, _ in runs)
    result.update({"batch_size": batch_size,
                   "batch_prompts_per_s": round(batch_size * len(runs) / elapsed, 1),
                   "batch_tokens_per_s": round(sum(t for _, t in runs) / elapsed, 1),
                   "parameters": student.parameters, "peak_rss_mb": round(_peak_rss_mb(), 1),
                   "threads": int(os.environ.get("UDRL_THREADS", 2))})
    queue.put(result)


def _teacher_worker(backend: str, intents: list[str], task: str, queue) -> None:
    from udrl.teacher import load_teacher

    teacher = load_teacher(backend)

    def one(intent: str) -> tuple[int, str]:
        out = teacher.generate([intent], task, n=1, seed=0, temperature=0.7, top_p=0.95)[0][0]
        return out.completion_tokens, out.text

    result = _single_stream(one, intents)
    result.update({"parameters": teacher.parameters, "peak_rss_mb": round(_peak_rss_mb(), 1),
                   "model": teacher.model})
    queue.put(result)


def _in_process(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:  # a worker that dies (bad checkpoint, missing teacher) must not leave us waiting forever
        try:
            result = queue.get(timeout=1.0)
            break
        except Exception:  # queue.Empty
            if not proc.is_alive():
                raise RuntimeError(f"benchmark worker {target.__name__} exited with code {proc.exitcode}; "
                                   "see the error above") from None
    proc.join()
    return result


def run_bench(checkpoint: str, intents_file: str, task: str = "image_prompt", prompts: int = 24,
              batch_size: int = 32, length: int | None = None, teachers: tuple[str, ...] = ("llama.cpp",
                                                                                            "transformers"),
              show: bool = True) -> dict:
    """Measure student and teachers; print a table and return the JSON-ready result."""
    import sys

    from udrl.student import check_checkpoint

    check_checkpoint(checkpoint)  # fail here with a clear message before any worker starts
    intents = read_intents(intents_file)[:prompts]
    result = {"task": task, "prompts": len(intents), "cpu_count": os.cpu_count(),
              "command": "python -m udrl " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"]
              else "udrl.bench.run_bench"}
    for backend in teachers:
        result[f"teacher_{backend.replace('.', '')}"] = _in_process(_teacher_worker, backend, intents, task)
    if length is None and "teacher_llamacpp" in result:
        length = round(result["teacher_llamacpp"]["mean_words"])  # same output length as the teacher
    result["student_length_command"] = length
    result["student"] = _in_process(_student_worker, checkpoint, intents, task, length, batch_size)
    s = result["student"]
    for backend in teachers:
        key = backend.replace(".", "")
        result[f"speedup_vs_{key}"] = round(result[f"teacher_{key}"]["p50_ms"] / s["p50_ms"], 1)
    if show:
        print(format_table(result))
    return result


def format_table(result: dict) -> str:
    rows = [("model", "params", "p50 ms", "p95 ms", "tokens/s", "words/out", "peak RSS MB")]
    for key, label in (("student", "student"), ("teacher_llamacpp", "teacher llama.cpp"),
                       ("teacher_transformers", "teacher transformers")):
        if key in result:
            m = result[key]
            params = f"{m['parameters'] / 1e6:.1f}M" if m.get("parameters") else "?"
            rows.append((label, params, f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}", f"{m['tokens_per_s']:.0f}",
                         f"{m['mean_words']:.1f}", f"{m['peak_rss_mb']:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    s = result["student"]
    lines.append(f"student batch {s['batch_size']}: {s['batch_prompts_per_s']:.0f} prompts/s, "
                 f"{s['batch_tokens_per_s']:.0f} tokens/s")
    lines += [f"p50 speed-up vs {k[len('speedup_vs_'):]}: {v}x" for k, v in result.items()
              if k.startswith("speedup_vs_")]
    return "\n".join(lines)
