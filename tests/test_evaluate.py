"""Evaluation, report, model card and benchmark on the tiny student."""

import json
import os
import shutil

import pytest

from udrl.config import EvaluateConfig
from udrl.evaluate import _diversity_beyond, evaluate, paired_difference, summary_lines, write_report
from udrl.cards import write_model_card


def test_evaluate_json_report_and_model_card(tiny_student, tmp_path):
    intents = tmp_path / "intents.txt"
    intents.write_text("lost cat\nholiday sale\nski trip\n")
    result = evaluate(EvaluateConfig(checkpoint=str(tiny_student), intents=str(intents), tasks="headline,image_prompt",
                                     samples=2, limit=3, json=str(tmp_path / "eval.json")))
    assert json.loads((tmp_path / "eval.json").read_text()) == json.loads(json.dumps(result))
    for task in ("headline", "image_prompt"):
        m = result["tasks"][task]
        assert len(m["sweep"]) >= 5 and len(m["length_sweep"]) >= 4
        assert {"relevance_command", "relevance_mean", "relevance_std", "length_mean", "novelty_mean", "n"} <= set(
            m["sweep"][0])
        assert -1 <= m["spearman"] <= 1 and -1 <= m["pearson"] <= 1 and m["length_mae"] >= 0
        language = {"non_word_rate", "subject_kept", "stock_phrases"}
        assert {"relevance_mean", "length_mean", "novelty_mean", "diversity"} | language <= set(m["teacher"])
        assert {"relevance_mean", "novelty_mean", "diversity"} | language <= set(m["top"])
        assert 0 <= m["top"]["non_word_rate"] <= 1 and 0 <= m["teacher"]["subject_kept"] <= 1
        assert 0 <= m["top"]["stock_phrases"] <= 1
        assert m["sampling"] == {"temperature": 0.7, "top_p": 0.95, "guidance_scale": 1.0,
                                 "repetition_penalty": 1.0, "sibling_penalty": 1.0}  # no sampling.json
        diff = m["top_vs_teacher"]
        assert diff["n_intents"] == 3 and diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    json.dumps(result, allow_nan=False)  # strict JSON
    report = write_report(result, tmp_path / "report")
    assert (tmp_path / "report" / "headline_relevance.html").is_file() and "| relevance command" in report.read_text()
    assert any("spearman" in line for line in summary_lines(result))
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_student, checkpoint)
    (checkpoint / "metrics.json").write_text(json.dumps(result))
    card = write_model_card(checkpoint).read_text()
    assert "## Evaluation" in card and "| headline |" in card


def test_evaluate_outside_tuning_leaves_out_the_tuning_intents(tiny_student, tmp_path, monkeypatch, capsys):
    import udrl.evaluate
    from udrl.__main__ import main
    from udrl.student.sampling import Sampling, save_sampling

    lines = [f"intent {i}" for i in range(7)]
    intents = tmp_path / "intents.txt"
    intents.write_text("\n".join(lines) + "\n")
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_student, checkpoint)
    save_sampling(checkpoint, {"headline": Sampling()}, {"intents": str(intents), "skip": 2, "n_intents": 3})
    assert udrl.evaluate.tuning_window(str(checkpoint), str(intents)) == (2, 3)
    seen = []
    monkeypatch.setattr(udrl.evaluate, "evaluate_task", lambda student, teacher, chosen, *rest: seen.append(chosen))
    result = evaluate(EvaluateConfig(checkpoint=str(checkpoint), intents=str(intents), tasks="headline", samples=2,
                                     limit=3, skip=1, teacher="none", outside_tuning=True,
                                     json=str(tmp_path / "eval.json")))
    assert seen == [["intent 1", "intent 5", "intent 6"]]  # 2..4 left out, then --skip 1 --limit 3
    assert result["left_out"] == {"skip": 2, "n_intents": 3} and result["n_intents"] == 3
    # a checkpoint tuned on nothing (or on another file) has nothing to leave out: one line, no traceback
    assert main(["evaluate", "--checkpoint", str(tiny_student), "--intents", str(intents), "--teacher", "none",
                 "--outside-tuning"]) == 2
    err = capsys.readouterr().err
    assert "was not tuned on" in err and "Traceback" not in err


def test_paired_difference_interval():
    """The interval is over intents: a steady gain excludes zero, a noisy one of the same mean does not."""
    import numpy as np

    teacher = np.random.default_rng(0).uniform(0.3, 0.7, 40)
    steady = paired_difference(teacher + 0.02, teacher)
    assert steady["mean"] == 0.02 and steady["ci95"][0] > 0 and steady["n_intents"] == 40
    noisy = paired_difference(teacher + 0.02 + np.random.default_rng(1).normal(0, 0.2, 40), teacher)
    assert noisy["ci95"][0] < 0 < noisy["ci95"][1]
    assert paired_difference([0.5, float("nan")], [0.4, 0.4]) == {"mean": 0.1, "ci95": None, "n_intents": 1}


def test_bench_measures_student_and_teacher(tiny_student, tmp_path):
    from udrl.bench import format_table, run_bench
    from udrl.student.sampling import Sampling, save_sampling

    checkpoint = tmp_path / "student"
    shutil.copytree(tiny_student, checkpoint)
    save_sampling(checkpoint, {"headline": Sampling(guidance_scale=2.0)}, {"command": "test"})
    intents = tmp_path / "intents.txt"
    intents.write_text("lost cat\nholiday sale\nski trip\nbook fair\n")
    result = run_bench(str(checkpoint), str(intents), task="headline", prompts=4, batch_size=8,
                       teachers=("llama.cpp",), round_size=2)
    s = result["student"]
    assert s["p50_ms"] > 0 and s["tokens_per_s"] > 0 and s["batch_tokens_per_s"] > 0 and s["peak_rss_mb"] > 0
    # guided by its checkpoint's settings, so also measured without guidance
    unguided = result["student_unguided"]
    assert s["sampling"]["guidance_scale"] == 2.0 and unguided["sampling"]["guidance_scale"] == 1.0
    assert unguided["prompts"] == 4 and unguided["tokens_per_s"] > 0 and unguided["batch_tokens_per_s"] > 0
    assert "student, unguided (guidance 1) at batch 8" in format_table(result)
    guarded = result["student_guarded"]  # as the app decodes by default
    assert guarded["word_guard"] and not s["word_guard"] and guarded["prompts"] == 4 and guarded["batches"] == 2
    assert result["guarded_speedup_vs_llamacpp"] > 0 and "student, word guard" in format_table(result)
    assert result["cpu"] and format_table(result).startswith(f"{result['cpu']}, {os.cpu_count()} cores")
    assert result["teacher_llamacpp"]["parameters"] > 100_000_000
    assert result["speedup_vs_llamacpp"] > 0
    ratio = s["batch_tokens_per_s"] / result["teacher_llamacpp"]["tokens_per_s"]  # the batch against one stream
    assert result["student_batch_vs_llamacpp_stream"] == pytest.approx(ratio, abs=0.05)
    assert f"stream: {result['student_batch_vs_llamacpp_stream']}x tokens/s" in format_table(result)
    assert s["prompts"] == result["teacher_llamacpp"]["prompts"] == 4  # both ran every prompt, in turns
    assert s["batches"] == unguided["batches"] == 2  # one batch in each round of turns (4 prompts, 2 a turn)
    (checkpoint / "bench.json").write_text(json.dumps(result))
    card = write_model_card(checkpoint).read_text()  # this bench left the transformers teacher out
    assert f"## Speed ({os.cpu_count()} CPU cores, {result['cpu']})" in card
    assert f"speed-up over the teacher: {result['speedup_vs_llamacpp']:.1f}x (llama.cpp)\n" in card
    assert f"speed-up over the teacher: {result['guarded_speedup_vs_llamacpp']:.1f}x (llama.cpp)" in card
    assert f"single llama.cpp stream: {result['student_batch_vs_llamacpp_stream']:.1f}x" in card


def test_bench_reports_a_worker_that_cannot_start(tiny_student, tmp_path):
    from udrl.bench import run_bench

    intents = tmp_path / "intents.txt"
    intents.write_text("lost cat\n")
    with pytest.raises(RuntimeError, match="benchmark worker _TeacherRunner exited"):
        run_bench(str(tiny_student), str(intents), task="headline", prompts=1, batch_size=2,
                  teachers=("no-such-backend",))


def test_diversity_beyond_the_intent_is_pooled_over_intents():
    # outputs that are the intent alone add no pairs and weigh nothing; repeats beyond it count against
    groups = [["lost cat"] * 3, ["ski trip: fresh snow", "Ski trip: fresh snow"]]
    assert _diversity_beyond(["lost cat", "ski trip"], groups) == 0.5
    assert _diversity_beyond(["lost cat"], [["lost cat"]]) == 0.0

