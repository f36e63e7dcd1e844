"""The teacher as a judge of English (real SmolLM2 GGUF): it ranks its own kind of output above a mangled one."""

import json

import pytest

from udrl.__main__ import main
from udrl.corpus import load_corpus
from udrl.fluency import TeacherFluency
from udrl.tasks import get_task


@pytest.fixture(scope="module")
def judge():
    return TeacherFluency(n_threads=2)


def test_teacher_prefers_real_english_on_the_subject(judge):
    intent, example = get_task("image_prompt").examples[0]
    mangled = example.replace("fluffy orange tabby", "flufy orangge tabbi").replace("porch", "porqh")
    clean, garbled, cut = judge.score("image_prompt", intent, [example, mangled, example.rsplit(",", 3)[0] + " of"])
    assert clean > garbled + 0.3  # invented words cost log-probability
    assert clean > cut  # so does a sentence cut short: the end of turn is scored too
    [headline, off_task] = judge.score("headline", "jazz night", ["Jazz Night: Smooth Sounds Under the Stars",
                                                                 "squid squid tabby porch deadline the the"])
    assert headline > off_task + 1.0


def test_scores_do_not_depend_on_what_was_scored_before(judge):
    outputs = ["Spring Bake Sale: Fresh Treats Await!", "Bake sale this weekend"]
    first = judge.score("headline", "spring bake sale", outputs)
    judge.score("search_queries", "lost dog", ["lost dog flyer; missing pet poster"])  # other turns in the context
    assert judge.score("headline", "spring bake sale", outputs[::-1]) == pytest.approx(first[::-1], abs=1e-4)


def test_rollouts_keep_the_teachers_likeliest_clean_outputs(tiny_student, tmp_path, capsys, monkeypatch):
    from udrl.student.model import Student

    original = Student.generate
    variants = ["{} poster in bright colors", "{} poster poster bright the of colors in", "{} posterqx"]

    def scripted(self, intents, task, n=1, **kwargs):  # two clean outputs per intent, one far less fluent
        groups = original(self, intents, task, n=n, **kwargs)
        for intent, group in zip(intents, groups):
            for k, out in enumerate(group):
                out.text = variants[k % 3].format(intent)
        return groups

    monkeypatch.setattr(Student, "generate", scripted)
    intents = tmp_path / "intents.txt"
    intents.write_text("lost cat\nholiday sale\n")
    out = tmp_path / "ranked"
    assert main(["rollouts", "--checkpoint", str(tiny_student), "--intents", str(intents), "--held-out", "",
                 "--samples", "3", "--teacher-rank", "1", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    records = load_corpus(out)
    assert report["kept"] == {task: 2 for task in report["kept"]} and len(records) == 6  # one per intent and task
    assert all(r["output"] == f"{r['intent']} poster in bright colors" for r in records)
    assert all(r["teacher_logprob"] < 0 for r in records)
