"""Side-by-side speed: the student and the teacher on the same intents and task, each warmed up.

Each model runs in its own process, so its peak RSS is its own, and the models take turns over the
prompts. Latency is end to end (tokenize, generate, decode) for one prompt at a time; batch throughput is
the student's at batch 32, one batch in each round of turns. The student samples with its checkpoint's
settings for the task; when those include command guidance (two forward rows per output), it is measured a
second time without guidance (``student_unguided``), and once more with the word guard (``student_guarded``,
as the app decodes by default), all taking turns with the others.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from udrl import invocation
from udrl.config import BenchConfig
from udrl.corpus import read_intents
from udrl.student.sampling import Sampling, load_sampling


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cpu_name() -> str:
    """The processor's model name, as the kernel reports it (figures here depend on it)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _StudentRunner:
    """The student in a worker process: one prompt at a time, or a batch."""

    def __init__(self, checkpoint: str, task: str, length: int | None, guidance_scale: float | None = None,
                 word_guard: bool = False):
        from udrl.student import load_student

        self.student, self.task, self.length = load_student(checkpoint).with_word_guard(word_guard), task, length
        self.parameters = self.student.parameters
        self.guidance_scale = guidance_scale  # None: the checkpoint's setting
        self.sampling = asdict(self.student.sampling_for(task).replace(guidance_scale=guidance_scale))

    def one(self, intent: str) -> tuple[int, str]:
        out = self.student.generate([intent], self.task, length=self.length, n=1, seed=0,
                                    guidance_scale=self.guidance_scale)[0][0]
        return out.tokens, out.text

    def batch(self, intents: list[str], seed: int) -> int:
        outs = self.student.generate(intents, self.task, length=self.length, seed=seed,
                                     guidance_scale=self.guidance_scale)
        return sum(o[0].tokens for o in outs)

    def describe(self) -> dict:
        return {"parameters": self.parameters, "sampling": self.sampling, "word_guard": self.student.word_guard}


class _TeacherRunner:
    """A teacher backend in a worker process, one prompt at a time."""

    def __init__(self, backend: str, task: str):
        from udrl.teacher import load_teacher

        self.teacher, self.task = load_teacher(backend), task
        self.parameters = self.teacher.parameters

    def one(self, intent: str) -> tuple[int, str]:
        out = self.teacher.generate([intent], self.task, n=1, seed=0)[0][0]
        return out.completion_tokens, out.text

    def describe(self) -> dict:
        return {"parameters": self.parameters, "model": self.teacher.model}


def _serve(runner_class, args: tuple, inbox, outbox) -> None:
    """Worker process: build the runner, then answer the parent's requests one at a time."""
    runner = runner_class(*args)
    outbox.put(("ready", None))
    while True:
        request, payload = inbox.get()
        if request == "run":  # one prompt at a time: (latency ms, tokens, words) for each
            results = []
            for intent in payload:
                started = time.perf_counter()
                tokens, text = runner.one(intent)
                results.append(((time.perf_counter() - started) * 1000, tokens, len(text.split())))
            outbox.put(("ok", results))
        elif request == "batch":  # one batch: (seconds, tokens)
            intents, seed = payload
            started = time.perf_counter()
            tokens = runner.batch(intents, seed=seed)
            outbox.put(("ok", (time.perf_counter() - started, tokens)))
        else:  # stop: what the model is and the most memory this process held
            outbox.put(("ok", {**runner.describe(), "peak_rss_mb": round(_peak_rss_mb(), 1)}))
            return


class _Worker:
    """A model in its own process (so its peak RSS is its own), driven by requests."""

    def __init__(self, runner_class, *args):
        ctx = mp.get_context("spawn")
        self.name = runner_class.__name__
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=_serve, args=(runner_class, args, self.inbox, self.outbox), daemon=True)
        self.proc.start()
        self._reply()

    def _reply(self):
        while True:  # a worker that dies (bad checkpoint, missing teacher) must not leave us waiting forever
            try:
                return self.outbox.get(timeout=1.0)[1]
            except Exception:  # queue.Empty
                if not self.proc.is_alive():
                    raise RuntimeError(f"benchmark worker {self.name} exited with code {self.proc.exitcode}; "
                                       "see the error above") from None

    def call(self, request: str, payload=None):
        self.inbox.put((request, payload))
        return self._reply()

    def close(self) -> dict:
        info = self.call("stop")
        self.proc.join()
        return info


def _summary(runs: list[tuple[float, int, int]]) -> dict:
    latencies = [r[0] for r in runs]
    tokens = sum(r[1] for r in runs)
    return {"p50_ms": round(statistics.median(latencies), 2), "p95_ms": round(_percentile(latencies, 0.95), 2),
            "tokens_per_s": round(tokens * 1000 / sum(latencies), 1), "mean_tokens": round(tokens / len(runs), 1),
            "mean_words": round(statistics.mean(r[2] for r in runs), 1), "prompts": len(runs)}


def bench(cfg: BenchConfig) -> dict:
    """The ``bench`` stage: measure, write ``cfg.json`` if given (inside the checkpoint it refreshes the model
    card) and return the result."""
    from udrl.cards import write_model_card

    result = run_bench(cfg.checkpoint, cfg.intents, task=cfg.task, prompts=cfg.prompts, batch_size=cfg.batch_size,
                       length=cfg.length)
    if cfg.json:
        out = Path(cfg.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        if out.resolve().parent == Path(cfg.checkpoint).resolve():
            write_model_card(cfg.checkpoint)
    return result


def run_bench(checkpoint: str, intents_file: str, task: str = BenchConfig.task, prompts: int = BenchConfig.prompts,
              batch_size: int = BenchConfig.batch_size, length: int | None = None,
              teachers: tuple[str, ...] = ("llama.cpp", "transformers"), round_size: int = 4, warmup: int = 3) -> dict:
    """Measure student and teachers; print a table and return the JSON-ready result.

    The models take turns, ``round_size`` prompts each, rather than one after the other, and each round
    ends with one timed batch per student: a long run slows this machine down (a shared, throttled CPU),
    so whatever ran last would be measured slower.
    """
    from udrl.student import check_checkpoint

    check_checkpoint(checkpoint)  # fail here with a clear message before any worker starts
    intents = read_intents(intents_file)[:prompts]
    result = {"task": task, "prompts": len(intents), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
              "interleaved": round_size, "command": invocation("bench", "udrl.bench.run_bench")}
    workers: dict[str, _Worker] = {}
    try:
        for backend in teachers:
            workers[f"teacher_{backend.replace('.', '')}"] = _Worker(_TeacherRunner, backend, task)
        if length is None and "teacher_llamacpp" in workers:
            # the student is asked for the teacher's mean length (its full warm-up pass, not timed)
            warm = workers["teacher_llamacpp"].call("run", intents)
            length = round(statistics.mean(w[2] for w in warm))
        result["student_length_command"] = length
        students = {"student": _Worker(_StudentRunner, checkpoint, task, length)}
        if load_sampling(checkpoint).get(task, Sampling()).guidance_scale != 1.0:
            students["student_unguided"] = _Worker(_StudentRunner, checkpoint, task, length, 1.0)
        students["student_guarded"] = _Worker(_StudentRunner, checkpoint, task, length, None, True)
        workers = {**students, **workers}
        batch = (intents * (batch_size // len(intents) + 1))[:batch_size]
        for name, worker in workers.items():
            worker.call("run", intents[:warmup])
            if name in students:
                worker.call("batch", (batch, 99))  # warm-up at this batch size
        runs: dict[str, list] = {name: [] for name in workers}
        batches: dict[str, list] = {name: [] for name in students}
        rounds = list(enumerate(range(0, len(intents), round_size)))
        for seed, start in tqdm(rounds, desc="bench rounds", unit="round"):
            for name, worker in workers.items():
                runs[name] += worker.call("run", intents[start : start + round_size])
            for name in students:  # a batch in every round too, so it meets the same machine states
                batches[name].append(workers[name].call("batch", (batch, seed)))
        for name, worker in workers.items():
            result[name] = {**_summary(runs[name]), **worker.close()}
    finally:
        for worker in workers.values():
            if worker.proc.is_alive():
                worker.proc.kill()
    for name, timings in batches.items():
        elapsed = sum(t for t, _ in timings)
        result[name].update({"batch_size": batch_size, "batches": len(timings),
                             "threads": int(os.environ.get("UDRL_THREADS", 2)),
                             "batch_prompts_per_s": round(batch_size * len(timings) / elapsed, 1),
                             "batch_tokens_per_s": round(sum(n for _, n in timings) / elapsed, 1)})
    for backend in teachers:
        key = backend.replace(".", "")
        result[f"speedup_vs_{key}"] = round(result[f"teacher_{key}"]["p50_ms"] / result["student"]["p50_ms"], 1)
        result[f"guarded_speedup_vs_{key}"] = round(result[f"teacher_{key}"]["p50_ms"]
                                                    / result["student_guarded"]["p50_ms"], 1)
    if "teacher_llamacpp" in result:  # the throughput goal: the student's batch against one teacher stream
        stream = result["teacher_llamacpp"]["tokens_per_s"]
        for name in ("student", "student_guarded"):
            result[f"{name}_batch_vs_llamacpp_stream"] = round(result[name]["batch_tokens_per_s"] / stream, 1)
    return result


def format_table(result: dict) -> str:
    rows = [("model", "params", "p50 ms", "p95 ms", "tokens/s", "words/out", "peak RSS MB")]
    for key, label in (("student", "student"), ("student_unguided", "student, unguided"),
                       ("student_guarded", "student, word guard"), ("teacher_llamacpp", "teacher llama.cpp"),
                       ("teacher_transformers", "teacher transformers")):
        if key in result:
            m = result[key]
            params = f"{m['parameters'] / 1e6:.1f}M" if m.get("parameters") else "?"
            rows.append((label, params, f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}", f"{m['tokens_per_s']:.0f}",
                         f"{m['mean_words']:.1f}", f"{m['peak_rss_mb']:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"{result.get('cpu', 'CPU')}, {result.get('cpu_count', '?')} cores"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    for key in ("student", "student_unguided", "student_guarded"):
        if key in result:
            s = result[key]
            lines.append(f"{key.replace('_', ', ')} (guidance {s['sampling']['guidance_scale']:g}) at batch "
                         f"{s['batch_size']}: {s['batch_prompts_per_s']:.0f} prompts/s, {s['batch_tokens_per_s']:.0f} "
                         "tokens/s")
    lines += [f"p50 speed-up vs {k[len('speedup_vs_'):]}: {v}x" for k, v in result.items()
              if k.startswith("speedup_vs_")]
    lines += [f"p50 speed-up of the guarded student vs {k[len('guarded_speedup_vs_'):]}: {v}x"
              for k, v in result.items() if k.startswith("guarded_speedup_vs_")]
    lines += [f"{name.replace('_', ', ')} at batch {result[name]['batch_size']} over the teacher's single llama.cpp "
              f"stream: {result[f'{name}_batch_vs_llamacpp_stream']}x tokens/s"
              for name in ("student", "student_guarded") if f"{name}_batch_vs_llamacpp_stream" in result]
    return "\n".join(lines)
