"""``python -m udrl sidebyside``: blind pairs whose key names the right writer of each side."""

import json

from udrl.__main__ import main


def test_blind_pairs_hide_the_systems_and_the_key_recovers_them(tiny_student, llama_teacher, tmp_path,
                                                                 monkeypatch, capsys):
    import udrl.teacher

    monkeypatch.setattr(udrl.teacher, "load_teacher", lambda backend: llama_teacher)
    intents = tmp_path / "intents.txt"
    intents.write_text("a llama wearing sunglasses\nvintage typewriter repair\n")
    out = tmp_path / "pairs"
    assert main(["sidebyside", "--checkpoint", str(tiny_student), "--intents", str(intents), "--limit", "2",
                 "--out", str(out), "--seed", "3"]) == 0
    key = json.loads((out / "key.json").read_text())
    items = key["items"]
    assert len(items) == 6 and sorted(i["item"] for i in items) == list(range(1, 7))
    assert {(i["task"], i["intent"]) for i in items} == {(t, x) for t in ("image_prompt", "search_queries", "headline")
                                                        for x in ("a llama wearing sunglasses", "vintage typewriter repair")}
    pairs = (out / "pairs.md").read_text()
    assert "student" not in pairs.lower() and "teacher" not in pairs.lower()
    rows = [line.split(" | ") for line in pairs.splitlines()[2:]]
    for item, row in zip(items, rows):
        a, b = row[3], row[4].removesuffix(" |")
        student, teacher = (a, b) if item["student_side"] == "A" else (b, a)
        assert student == " ".join(item["student"]["output"].split()).replace("|", "\\|") or student == "(empty)"
        assert teacher == " ".join(item["teacher"]["output"].split()).replace("|", "\\|") or teacher == "(empty)"
        assert 0 <= item["student"]["non_word_rate"] <= 1 and isinstance(item["teacher"]["subject_kept"], bool)
    examples = (out / "examples.md").read_text()
    assert "| student | teacher |" in examples and examples.count("\n") == 8

    # a reader who always picks the student's side, marks the teacher's outputs invented and only item 1 a tie
    verdicts = [{"item": i["item"], "prefer": "tie" if i["item"] == 1 else i["student_side"],
                 **{f"invented_{s}": s != i["student_side"] for s in "AB"},
                 **{f"subject_{s}": s == i["student_side"] for s in "AB"}} for i in items]
    (out / "reader-x.json").write_text(json.dumps(verdicts))
    assert main(["verdicts", "--folder", str(out)]) == 0
    counts = json.loads((out / "verdicts.json").read_text())["readers"]["x"]
    assert counts["all"]["preferred"] == {"student": 5, "teacher": 0, "tie": 1}
    assert counts["all"]["invented"] == {"student": 0, "teacher": 6} and counts["all"]["subject"]["student"] == 6
    assert sum(counts[t]["judged"] for t in ("image_prompt", "search_queries", "headline")) == 6
    verdicts[2]["prefer"] = "left"
    (out / "reader-y.json").write_text(json.dumps(verdicts))
    assert main(["verdicts", "--folder", str(out)]) == 2
    assert "verdict 3 (item 3) needs" in capsys.readouterr().err
    for bad in ("[]", '[{"item": [1]}]', "{"):
        (out / "reader-y.json").write_text(bad)
        assert main(["verdicts", "--folder", str(out)]) == 2
        err = capsys.readouterr().err
        assert "reader-y.json" in err and "Traceback" not in err
    (out / "key.json").write_text('{"items": [{"item": 1}]}')
    assert main(["verdicts", "--folder", str(out)]) == 2
    assert "is not a key written by" in capsys.readouterr().err


def test_sidebyside_rejects_an_empty_window(tiny_student, tmp_path, capsys):
    intents = tmp_path / "intents.txt"
    intents.write_text("holiday sale\n")
    assert main(["sidebyside", "--checkpoint", str(tiny_student), "--intents", str(intents), "--skip", "5",
                 "--out", str(tmp_path / "x")]) == 2
    assert "no intents" in capsys.readouterr().err
