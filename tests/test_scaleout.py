"""One generate run fed by several teacher servers: real llama.cpp servers on loopback serving the offline
teacher, and a small fake server for the faults a real one will not make on demand (429, 500)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import launch_llama_server, stop_process
from udrl.corpus import iter_records, record_id
from udrl.generate import GenerationPlan, generate_corpus
from udrl.servers import BACKOFF_CAP, backoff_delay, server_urls
from udrl.teacher import OpenAITeacher

INTENTS = ["lost cat poster", "holiday sale", "bakery opening", "jazz night", "yoga retreat", "book fair",
           "pizza party", "beach cleanup"]
FAST = {"backoff": 0.02, "max_failures": 2}  # fault tests need not wait a second per retry


class FakeServer:
    """An OpenAI-compatible app whose answers the test chooses: ``reply(call number, body) -> (status, json)``."""

    def __init__(self, reply):
        self.calls = 0
        lock, fake = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._send(200, {"data": [{"id": "fake"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    fake.calls += 1
                    n = fake.calls
                self._send(*reply(n, body))

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def echo(n: int, body: dict) -> tuple[int, dict]:
    return 200, {"choices": [{"message": {"content": f"Fresh headline number {body['seed']}"}}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 4}}


def failing(status: int):
    return lambda n, body: (status, {"error": {"message": f"fake {status}"}})


@pytest.fixture
def fake():
    started = []

    def start(reply):
        started.append(FakeServer(reply))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def servers():
    """Two llama.cpp servers with one thread each."""
    launched = [launch_llama_server() for _ in range(2)]
    yield [url for url, _ in launched]
    for _, proc in launched:
        stop_process(proc)


@pytest.fixture
def victim():
    """A llama.cpp server the test kills."""
    url, proc = launch_llama_server()
    yield url, proc
    stop_process(proc)


def plan(n_intents: int = 6) -> GenerationPlan:
    return GenerationPlan({i: "train" for i in INTENTS[:n_intents]}, ("headline",), samples=2)


def expected_ids(p: GenerationPlan) -> set[str]:
    return {record_id(i, t, k) for i in p.intents for t in p.tasks for k in range(p.samples)}


def corpus_ids(out) -> list[str]:
    return [r["id"] for r in iter_records(out)]


def when_written(out, n: int, then, timeout: float = 120) -> int:
    """Call ``then()`` once ``out`` holds ``n`` records; how many it held then."""
    deadline = time.time() + timeout
    while len(corpus_ids(out)) < n:
        assert time.time() < deadline, "no records written"
        time.sleep(0.05)
    then()
    return len(corpus_ids(out))


def test_server_urls_from_options_or_environment(monkeypatch):
    monkeypatch.setenv("UDRL_TEACHER_URL", "http://a:8000/v1/, http://b:8000/v1")
    assert server_urls(None) == ["http://a:8000/v1", "http://b:8000/v1"]
    assert server_urls(["http://c/v1,http://d/v1", "http://c/v1"]) == ["http://c/v1", "http://d/v1"]


def test_backoff_doubles_with_jitter_and_honours_retry_after():
    assert all(0.5 <= backoff_delay(0, 1.0) <= 1.0 and 2.0 <= backoff_delay(2, 1.0) <= 4.0 for _ in range(20))
    assert backoff_delay(20, 1.0) == BACKOFF_CAP and backoff_delay(0, 0.1, retry_after=2.0) == 2.0


def test_answers_keep_the_order_of_the_requests(fake):
    # later requests are answered sooner: the samples still come back in input order, seeded as one at a time
    server = fake(lambda n, body: (time.sleep(0.04 * (18 - body["seed"])), echo(n, body))[1])
    teacher = OpenAITeacher(server.url, concurrency=8)
    out = teacher.generate(INTENTS[:4], "headline", n=2, seed=10)
    assert [[s.seed for s in g] for g in out] == [[10, 11], [12, 13], [14, 15], [16, 17]]
    assert [s.text for g in out for s in g] == [f"Fresh headline number {k}" for k in range(10, 18)]


def test_two_servers_give_more_samples_per_second(servers):
    one = OpenAITeacher(servers[:1], concurrency=2)
    two = OpenAITeacher(servers, concurrency=4)
    two.generate(INTENTS[:2], "headline", max_new_tokens=8)  # each server caches the few-shot prompt
    intents = INTENTS + INTENTS[:4]
    elapsed = {"one": 0.0, "two": 0.0}
    for name, teacher in (("one", one), ("two", two), ("two", two), ("one", one)):  # drift in load cancels
        started = time.perf_counter()
        out = teacher.generate(intents, "headline", seed=1, max_new_tokens=16)
        elapsed[name] += time.perf_counter() - started
        assert all(g[0].text for g in out) and [g[0].seed for g in out] == list(range(1, 1 + len(intents)))
    assert all(s.done >= len(intents) // 2 for s in two.pool.servers)  # both took a share
    rates = {name: 2 * len(intents) / seconds for name, seconds in elapsed.items()}
    assert rates["two"] > rates["one"], rates


def test_a_server_killed_mid_run_leaves_a_complete_corpus(servers, victim, tmp_path):
    url, proc = victim
    teacher = OpenAITeacher([url, servers[0]], **FAST)
    p = plan()
    with ThreadPoolExecutor(1) as run:
        written = run.submit(generate_corpus, teacher, p, tmp_path, chunk=2, score=False, progress=False)
        assert when_written(tmp_path, 2, proc.kill) < len(expected_ids(p))  # killed mid-run
        assert written.result(timeout=300) == len(expected_ids(p))
    ids = corpus_ids(tmp_path)
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(p)  # no duplicate, no lost record
    dead, alive = teacher.pool.servers
    assert dead.dropped and dead.failures >= 2 and not alive.dropped
    assert generate_corpus(teacher, p, tmp_path, score=False, progress=False) == 0  # nothing left to do


def test_429_and_500_are_retried_then_the_server_is_dropped(servers, fake, tmp_path):
    limited, broken = fake(failing(429)), fake(failing(500))
    teacher = OpenAITeacher([limited.url, broken.url, servers[0]], **FAST)
    p = plan(3)
    assert generate_corpus(teacher, p, tmp_path, score=False, progress=False) == len(expected_ids(p))
    assert set(corpus_ids(tmp_path)) == expected_ids(p)
    for server in teacher.pool.servers[:2]:  # a request already in flight when it leaves may fail too
        assert server.done == 0 and server.failures >= 2 and server.dropped.startswith("2 failures in a row")
    assert teacher.pool.retried >= 4 and teacher.pool.servers[2].done == len(expected_ids(p))
    summary = "\n".join(teacher.pool.summary())
    assert "1 of 3 in rotation" in summary and "HTTP 429" in summary and "HTTP 500" in summary


def test_a_passing_fault_is_retried_and_the_server_kept(fake):
    server = fake(lambda n, body: failing(503)(n, body) if n == 1 else echo(n, body))
    teacher = OpenAITeacher(server.url, concurrency=1, **FAST)
    [[sample]] = teacher.generate(["holiday sale"], "headline", seed=4)
    assert sample.text == "Fresh headline number 4"
    assert teacher.pool.retried == 1 and not teacher.pool.servers[0].dropped


def test_all_servers_down_stops_with_one_line_and_a_rerun_resumes(servers, victim, tmp_path, capsys):
    from udrl.__main__ import main

    url, proc = victim
    (tmp_path / "intents").mkdir()
    (tmp_path / "intents" / "train.txt").write_text("\n".join(INTENTS[:4]) + "\n")
    (tmp_path / "intents" / "test.txt").write_text("\n".join(INTENTS[4:6]) + "\n")
    out = tmp_path / "corpus"
    args = ["generate", "--backend", "openai", "--model", "smollm2", "--intents", str(tmp_path / "intents"),
            "--tasks", "headline", "--samples", "2", "--out", str(out), "--raw", "--chunk", "2",
            "--backoff", "0.02", "--max-failures", "2"]
    with ThreadPoolExecutor(1) as run:
        code = run.submit(main, [*args, "--url", url])
        when_written(out, 2, proc.kill)
        assert code.result(timeout=300) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: no teacher server is left (") and "rerun the same command" in last
    before = corpus_ids(out)
    assert 2 <= len(before) < 12

    assert main([*args, "--url", servers[0]]) == 0
    ids = corpus_ids(out)
    assert ids[: len(before)] == before and len(ids) == len(set(ids)) == 12
