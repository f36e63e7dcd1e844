import json
import subprocess
import sys

import pytest

from udrl.corpus import iter_records, load_corpus, read_intents, record_id, validate_record
from udrl.generate import GenerationPlan, decoding_for, generate_corpus, score_raw
from udrl.teacher import TeacherOutput

from conftest import ROOT, make_records


class CountingTeacher:
    """A deterministic in-process teacher: answers are derived from the intent, so the test can check
    resume behaviour without the cost of a real model."""

    backend, model = "counting", "echo"

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def generate(self, intents, task, n=1, seed=0, temperature=0.7, top_p=0.95, max_new_tokens=None):
        out = []
        for intent in intents:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise KeyboardInterrupt
            text = f"{intent} design with bright colors {seed} {temperature}"
            out.append([TeacherOutput(text, text, 1.0, 10, 5, [], {"temperature": temperature, "top_p": top_p},
                                      seed)])
        return out


def _plan(n=6):
    intents = {f"intent number {i}": ("test" if i % 3 == 0 else "train") for i in range(n)}
    return GenerationPlan(intents, ("headline", "search_queries"), samples=2)


def test_resume_continues_without_duplicates(tmp_path):
    plan = _plan()
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(CountingTeacher(fail_after=9), plan, tmp_path, chunk=2, progress=False)
    partial = [r["id"] for r in iter_records(tmp_path)]
    assert 0 < len(partial) < 24
    generate_corpus(CountingTeacher(), plan, tmp_path, chunk=2, progress=False)
    ids = [r["id"] for r in iter_records(tmp_path)]
    assert len(ids) == len(set(ids)) == 6 * 2 * 2
    again = CountingTeacher()
    assert generate_corpus(again, plan, tmp_path, chunk=2, progress=False) == 0 and again.calls == 0
    for record in iter_records(tmp_path):
        validate_record(record)
    assert {r["split"] for r in iter_records(tmp_path)} == {"train", "test"}


def test_torn_line_is_repaired_and_regenerated(tmp_path):
    plan = _plan(2)
    generate_corpus(CountingTeacher(), plan, tmp_path, progress=False)
    shard = next(tmp_path.glob("*.jsonl"))
    data = shard.read_bytes()
    shard.write_bytes(data[:-20])  # a write cut short by a kill
    assert len(list(iter_records(tmp_path))) == 7
    generate_corpus(CountingTeacher(), plan, tmp_path, progress=False)
    ids = [r["id"] for r in iter_records(tmp_path)]
    assert len(ids) == len(set(ids)) == 8


def test_samples_of_an_intent_get_different_decoding():
    assert decoding_for("holiday sale", 0) != decoding_for("holiday sale", 1)
    assert record_id("a", "headline", 0) != record_id("a", "headline", 1)


def test_raw_records_are_scored_later(tmp_path):
    plan = _plan(2)
    generate_corpus(CountingTeacher(), plan, tmp_path / "raw", progress=False, score=False)
    assert all(r["rewards"] is None for r in iter_records(tmp_path / "raw"))
    assert score_raw(tmp_path / "raw", tmp_path / "out") == 8
    assert score_raw(tmp_path / "raw", tmp_path / "out") == 0
    assert all(r["rewards"]["length"] > 0 for r in iter_records(tmp_path / "out"))


def test_validate_rejects_bad_records():
    good = make_records(1, 1)[0]
    validate_record(good)
    for change in ({"task": "poem"}, {"split": "dev"}, {"output": " "}, {"rewards": {"relevance": 2.0,
                                                                                      "length": 1,
                                                                                      "novelty": 0.5}}):
        with pytest.raises(ValueError):
            validate_record({**good, **change})
    with pytest.raises(ValueError):
        validate_record({k: v for k, v in good.items() if k != "seed"})


def test_committed_intents_and_corpus_follow_the_contract():
    train = read_intents(ROOT / "data/intents/train.txt")
    test = read_intents(ROOT / "data/intents/test.txt")
    assert len(train) >= 2000 and len(test) >= 300 and not set(train) & set(test)
    records = load_corpus(ROOT / "data/distill")
    assert records, "the committed corpus is empty"
    for record in records[:500]:
        validate_record(record)
    datasets = pytest.importorskip("datasets", reason="datasets is a dev dependency")
    ds = datasets.load_dataset("json", data_files=sorted(map(str, (ROOT / "data/distill").rglob("*.jsonl"))),
                               split="train")
    assert len(ds) == len(records)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "udrl", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


@pytest.mark.parametrize("args", [
    ("generate", "--tasks", "poem"),
    ("generate", "--intents", "/nonexistent"),
    ("generate", "--samples", "many"),
    ("generate", "--worker", "3/2"),
    ("evaluate", "--checkpoint", "/nonexistent"),
    ("evaluate", "--checkpoint", "udrl"),  # a folder that is not a checkpoint
    ("frobnicate",),
])
def test_cli_errors_are_one_clear_line(args):
    result = _cli(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_cli_generate_writes_records_with_real_teacher(tmp_path):
    (tmp_path / "intents").mkdir()
    (tmp_path / "intents/train.txt").write_text("lost cat poster\n")
    (tmp_path / "intents/test.txt").write_text("holiday sale\n")
    result = _cli("generate", "--intents", str(tmp_path / "intents"), "--tasks", "headline", "--samples", "1",
                  "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for f in (tmp_path / "out").glob("*.jsonl") for line in f.open()]
    assert {r["intent"] for r in records} == {"lost cat poster", "holiday sale"}
    for r in records:
        validate_record(r)
        assert r["teacher"]["backend"] == "llama.cpp"
