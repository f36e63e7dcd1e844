"""``python -m udrl rollouts``: the student's own clean outputs, relabelled, for the next training round."""

import json

import pytest

from udrl.__main__ import main
from udrl.corpus import load_corpus
from udrl.rewards import PhraseCap
from udrl.student import load_student


def test_rollouts_keep_clean_on_subject_english_relabelled(tiny_student, tmp_path, capsys, monkeypatch):
    from udrl import rewards
    from udrl.student.model import Student

    original = Student.generate

    def scripted(self, intents, task, n=1, **kwargs):  # real commands and settings, outputs of three kinds
        groups = original(self, intents, task, n=n, **kwargs)
        for intent, group in zip(intents, groups):
            for k, out in enumerate(group):
                out.text = [f"{intent} poster in bright colors", f"{intent} posterqx in brightzz colors",
                            "bright poster in soft colors"][k % 3]
        return groups

    monkeypatch.setattr(Student, "generate", scripted)
    intents = tmp_path / "intents.txt"
    intents.write_text("lost cat\nholiday sale\nbakery opening\njazz night\nsecret test intent\n")
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("secret test intent\n")
    out = tmp_path / "rollouts"
    args = ["rollouts", "--checkpoint", str(tiny_student), "--intents", str(intents), "--held-out", str(held_out),
            "--samples", "3", "--block", "1", "--out", str(out), "--seed", "1"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["intents"] == 4  # the held-out intent is never rolled out
    kept = sum(report["kept"].values())
    assert kept + sum(report["dropped"].values()) == 4 * 3 * 3
    records = load_corpus(out)
    assert len(records) == kept and len({r["id"] for r in records}) == kept
    assert all(r["source"] == "student" and r["split"] == "train" and r["intent"] != "secret test intent"
               for r in records)
    texts = [r["output"] for r in records]
    assert not any("posterqx" in t for t in texts)  # invented words never kept
    assert "bright poster in soft colors" not in texts  # nor outputs that lost the subject
    assert len(texts) == 4 * 3 and all(t.endswith("poster in bright colors") for t in texts)  # the clean ones
    assert len({r["decoding"]["relevance"] for r in records}) == 4 * 3  # a command drawn for each block
    student = load_student(tiny_student)
    for r in records:  # lengths the teacher writes for the task, never a 40-word headline
        short, long = student.encoding.length_range[r["task"]]
        assert short <= r["decoding"]["length"] <= long
    assert max(rewards.non_word_rate([r["intent"] for r in records], texts)) == 0
    # the label is what the output achieved, not the command it was written under
    assert [r["rewards"] for r in records] == rewards.score([r["intent"] for r in records], texts)

    assert main(args) == 2  # never mixed with an earlier round
    assert "already holds rollouts" in capsys.readouterr().err

    # another round on other intents, under the word guard
    again = args[:-4] + ["--skip", "2", "--word-guard", "--temperature", "1.1", "--out", str(tmp_path / "round-2"),
                         "--seed", "2"]
    assert main(again) == 0 and json.loads(capsys.readouterr().out)["intents"] == 2
    records = load_corpus(tmp_path / "round-2")
    assert {r["intent"] for r in records} == {"bakery opening", "jazz night"}
    assert all(r["decoding"]["word_guard"] and r["decoding"]["temperature"] == 1.1 for r in records)

    # a phrase cap of 1: "poster in bright colors" may be taught once per task, whatever the intent
    capped = args[:-4] + ["--phrase-cap", "1", "--out", str(tmp_path / "capped"), "--seed", "1"]
    assert main(capped) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kept"] == {task: 1 for task in report["kept"]} and len(report["kept"]) == 3

    # the opposite round: only the outputs with invented words, for the word loss
    mistakes = args[:-4] + ["--keep", "mistakes", "--out", str(tmp_path / "mistakes"), "--seed", "1"]
    assert main(mistakes) == 0
    texts = [r["output"] for r in load_corpus(tmp_path / "mistakes")]
    assert len(texts) == 4 * 3 and all("posterqx" in t for t in texts)
    assert main(mistakes[:-4] + ["--word-guard", "--out", str(tmp_path / "guarded"), "--seed", "1"]) == 2
    assert "without --word-guard" in capsys.readouterr().err


def test_phrase_cap_admits_a_stock_phrase_only_so_often():
    stock = "poster in bright pink and white"
    cap = PhraseCap(2)
    assert cap.admit("lost cat", f"lost cat {stock}") and cap.admit("jazz night", f"jazz night {stock}")
    assert not cap.admit("bakery opening", f"bakery opening {stock}")  # a third time
    assert cap.admit("bakery opening", "bakery opening poster with warm bread on a wooden table")
    one = PhraseCap(1)  # phrases holding an intent word are the subject, not stock: never capped
    assert all(one.admit("lost cat", "lost cat poster now") for _ in range(3))
    assert all(PhraseCap(0).admit("lost cat", f"lost cat {stock}") for _ in range(3))


def test_train_caps_stock_phrases_of_rollouts_only():
    """``train --phrase-cap``: the student's own rollouts sharing a phrase beyond their subject are kept only so
    often; the teacher's records and augmented copies all stay, whatever they share."""
    from udrl.train import cap_rollout_phrases

    stock = "in bright pink and white"
    subjects = ["lost cat", "jazz night", "bakery opening", "tulip farm", "chess club"]
    rollouts = [{"task": "image_prompt", "intent": s, "output": f"{s} poster {stock}", "source": "student"}
                for s in subjects]
    fresh = {"task": "image_prompt", "intent": "kite day", "output": "kite day over green hills at noon",
             "source": "student"}
    other_task = {**rollouts[0], "task": "headline"}
    teacher = [{"task": "image_prompt", "intent": s, "output": f"{s} flyer {stock}"} for s in subjects]
    records = teacher + rollouts + [fresh, other_task]
    kept = cap_rollout_phrases(records, cap=2, seed=0)
    assert [r for r in kept if r.get("source") != "student"] == teacher
    assert sum(r in kept for r in rollouts) == 2  # the first two drawn of five
    assert fresh in kept and other_task in kept  # a phrase of its own; each task is capped apart
    drawn = {tuple(r["intent"] for r in cap_rollout_phrases(records, 2, seed) if r in rollouts) for seed in range(10)}
    assert len(drawn) > 1  # drawn in a shuffled order, not always the first round's
    assert cap_rollout_phrases(records, cap=0, seed=0) == records


def test_train_counts_rollouts_among_augmented_records(tiny_student, tiny_corpus, tmp_path):
    """``train --augmented`` takes several folders; the model card counts the student's own records apart."""
    from udrl.train import TrainConfig, train, usable

    from udrl.corpus import ShardWriter

    out = tmp_path / "rollouts"  # records as `rollouts` writes them
    writer = ShardWriter(out, prefix="rollout")
    for record in [r for r in load_corpus(tiny_corpus, split="train") if usable(r)][:20]:
        writer.write({**record, "id": record["id"] + "-rollout0", "source": "student"})
    writer.close()
    rolled = 20
    info = train(TrainConfig(corpus=str(tiny_corpus), augmented=f"{tiny_corpus}, {out}", init=str(tiny_student),
                             out=str(tmp_path / "next"), state_dir=str(tmp_path / "state"), epochs=1, batch_size=16,
                             progress=False))
    assert info["rollout_records"] == rolled > 0
    with_mistakes = train(TrainConfig(corpus=str(tiny_corpus), word_samples=str(out), word_loss=1.0,
                                      init=str(tiny_student), out=str(tmp_path / "words"),
                                      state_dir=str(tmp_path / "words-state"), max_steps=2, batch_size=16,
                                      progress=False))
    assert with_mistakes["word_sample_records"] == rolled and with_mistakes["rollout_records"] == 0
    card = (tmp_path / "words" / "README.md").read_text()
    assert f"{rolled} of them the student's own outputs with invented words" in card and "word loss 1 " in card
    with pytest.raises(ValueError, match="--word-loss"):
        TrainConfig(word_samples=str(out))
    assert "relabelled by `python -m udrl rollouts`" in (tmp_path / "next" / "README.md").read_text()


def test_model_card_says_the_rollouts_phrase_cap():
    from udrl.cards import _stage_line

    stage = {"config": {"phrase_cap": 10, "lr": 5e-4, "batch_size": 64, "epochs": 1, "seed": 0},
             "train_records": 100, "augmented_records": 30, "rollout_records": 30, "heldout_records": 5}
    assert ("(30 of them the student's own outputs, relabelled by `python -m udrl rollouts`, at most 10 of a task's "
            "sharing a 4-word phrase beyond the subject)") in _stage_line(stage, 2)
    assert "at most" not in _stage_line({**stage, "config": {**stage["config"], "phrase_cap": 0}}, 2)
