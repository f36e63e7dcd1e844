"""Shared fixtures: a tiny corpus and a tiny UDRL student trained on it in a few seconds."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = ["lost cat", "holiday sale", "bakery opening", "jazz night", "yoga retreat", "book fair",
            "pizza party", "beach cleanup", "science fair", "dog adoption", "craft market", "ski trip"]
WORDS = ["bright", "poster", "warm", "light", "bold", "soft", "colors", "modern", "flyer", "vintage",
         "sunset", "studio", "banner", "cheerful", "minimal", "festive"]


def make_records(n_intents: int = 12, samples: int = 4, seed: int = 0) -> list[dict]:
    """Synthetic corpus records following the contract; relevance grows with the share of intent words."""
    rng = random.Random(seed)
    records = []
    for i, subject in enumerate(SUBJECTS[:n_intents]):
        split = "test" if i % 6 == 5 else "train"
        for task in ("image_prompt", "search_queries", "headline"):
            for k in range(samples):
                n_words = rng.randint(4, 20)
                copy = k / max(samples - 1, 1)
                words = [subject if rng.random() < copy * 0.4 else rng.choice(WORDS) for _ in range(n_words)]
                output = " ".join(words)
                records.append({
                    "id": f"{task}-{i:04d}-{k}", "intent": subject, "task": task, "output": output,
                    "split": split, "teacher": {"backend": "test", "model": "synthetic"},
                    "decoding": {"temperature": 0.7, "top_p": 0.95}, "seed": k,
                    "rewards": {"relevance": round(0.2 + 0.6 * copy + rng.uniform(-0.05, 0.05), 4),
                                "length": len(output.split()), "novelty": round(1 - copy * 0.4, 4)},
                    "latency_ms": 1.0,
                })
    return records


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    with (d / "part-00000.jsonl").open("w") as fh:
        for r in make_records():
            fh.write(json.dumps(r) + "\n")
    return d


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory, tiny_corpus) -> Path:
    """A 2-layer, 32-wide GPT-2 student trained for a couple of epochs on the synthetic corpus."""
    from udrl.train import TrainConfig, train

    out = tmp_path_factory.mktemp("student")
    state = tmp_path_factory.mktemp("state")
    train(TrainConfig(corpus=str(tiny_corpus), out=str(out), state_dir=str(state), vocab_size=400, n_layer=2,
                      n_embd=32, n_head=2, epochs=2, batch_size=16, lr=3e-3, progress=False))
    return out


@pytest.fixture(scope="session")
def llama_teacher():
    from udrl.teacher import load_teacher

    # one thread: where the cores are busy, two llama.cpp threads wait on each other (measured 6-15x slower)
    return load_teacher("llama.cpp", n_threads=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ``python -m llama_cpp.server``, loading the model with the project's llama.cpp parameters
SERVE_LLAMA = ("import runpy\nfrom udrl.llamacpp import safe_model_params\nwith safe_model_params():\n"
               "    runpy.run_module('llama_cpp.server', run_name='__main__')")


def launch_llama_server(threads: int = 1, timeout: float = 90) -> tuple[str, subprocess.Popen]:
    """A real llama.cpp server with the offline teacher on a free loopback port: (base URL, process)."""
    import httpx

    from udrl.teacher import proxy_gguf_path

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE_LLAMA, "--model", str(proxy_gguf_path()),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
                             "--n_threads", str(threads), "--n_threads_batch", str(threads)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            # its own session, as on its own host: where the kernel groups CPU time by session
                            # (sched_autogroup), servers started from one session would share one slice
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            httpx.get(f"{url}/models", timeout=5).raise_for_status()
            return url, proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                pytest.fail("llama_cpp.server exited at start")
            time.sleep(0.3)
    stop_process(proc)
    pytest.fail(f"llama_cpp.server did not start in {timeout:.0f} s")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server started by a test (kill it if it lingers)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def launch_app(tiny_student, tmp_path_factory, **extra_env):
    """Start ``python app.py`` on a free loopback port; returns (url, client, process)."""
    port = free_port()
    env = {**os.environ, "UDRL_CHECKPOINT": str(tiny_student), "GRADIO_SERVER_PORT": str(port),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False",
           "UDRL_RATINGS_DB": str(tmp_path_factory.mktemp("served") / "ratings.sqlite"), **extra_env}
    log = tmp_path_factory.mktemp("log") / "app.log"
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    from gradio_client import Client

    deadline = time.time() + 120
    client = None
    while time.time() < deadline:
        try:
            client = Client(url, verbose=False)
            break
        except Exception:  # not listening yet
            if proc.poll() is not None:
                pytest.fail(f"app exited: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    if client is None:
        proc.kill()
        pytest.fail("app did not start in 120 s")
    return url, client, proc


def wait_for_teacher(client, timeout: float = 120) -> None:
    """The teacher loads in the background: wait until /compare includes it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if "still loading" not in client.predict("holiday sale", "headline", 0.5, 8, 1, 0, api_name="/compare")[2]:
            return
        time.sleep(1)
    pytest.fail("the teacher did not load")


@pytest.fixture(scope="session")
def server(tiny_student, tmp_path_factory):
    url, client, proc = launch_app(tiny_student, tmp_path_factory)
    wait_for_teacher(client)
    yield url, client, proc
    proc.terminate()
    proc.wait(timeout=30)


