"""Command guidance and per-task sampling settings, on the tiny student."""

import copy
import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from udrl.student.sampling import SAMPLING_FILE, Sampling, load_sampling, save_sampling
from udrl.student import CheckpointError, load_student


def _pair(student, task="image_prompt"):
    enc = student.encoding
    lo, hi = enc.relevance_range[task]
    prompt = student.prompt_ids("lost cat poster", task, hi, 12)
    reference = student.prompt_ids("lost cat poster", task, enc.reference_relevance(task, hi), 12)
    assert reference != prompt and len(reference) == len(prompt) and enc.reference_relevance(task, hi) == pytest.approx(lo)
    return prompt, reference


def test_guided_greedy_equals_transformers_guidance(tiny_student):
    """FastGPT2's guided scores are transformers' classifier-free guidance with the reference as negative prompt."""
    student = load_student(tiny_student)
    prompt, reference = _pair(student)
    for scale in (1.5, 3.0):
        with torch.no_grad():
            out = student.model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                         guidance_scale=scale, negative_prompt_ids=torch.tensor([reference]),
                                         eos_token_id=student.eos_id, pad_token_id=student.pad_id)
        expected = out[0, len(prompt):].tolist()
        expected = expected[: expected.index(student.eos_id)] if student.eos_id in expected else expected
        fast = student.fast.generate([prompt], 12, student.eos_id, student.pad_id, temperature=0,
                                     references=[reference], guidance_scale=scale)[0]
        assert fast == expected
        single = student.single.generate([prompt], 12, student.eos_id, student.pad_id, temperature=0,
                                          references=[reference], guidance_scale=scale)[0]
        assert single == expected, "llama.cpp's two-sequence path should guide the same way"


def test_guided_scores_give_transformers_guided_distribution():
    """Same distribution and argmax as transformers' guidance processor (which works on log-probabilities)."""
    from transformers.generation.logits_process import UnbatchedClassifierFreeGuidanceLogitsProcessor

    from udrl.student.decoding import guided_scores

    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(0)) * 4  # rows: command, reference

    def reference_model(ids, **kwargs):  # what the processor would get from running the reference prompt
        return SimpleNamespace(logits=logits[1:, None], get=lambda key, default=None: default)

    for scale in (1.5, 3.0):
        processor = UnbatchedClassifierFreeGuidanceLogitsProcessor(scale, reference_model)
        expected = processor(torch.zeros(1, 1, dtype=torch.long), logits[:1])
        ours = guided_scores(logits, scale)
        torch.testing.assert_close(ours.softmax(-1), expected.softmax(-1))
        assert ours.argmax() == expected.argmax()


def test_guided_batch_rows_decode_as_alone(tiny_student):
    """Guided rows of different lengths in one batch (padding, compaction) equal each row decoded alone."""
    student = load_student(tiny_student)
    pairs = [_pair(student, t) for t in ("image_prompt", "headline", "search_queries")]
    prompts, references = [p for p, _ in pairs], [r for _, r in pairs]
    alone = [student.fast.generate([p], 20, student.eos_id, student.pad_id, temperature=0, references=[r],
                                   guidance_scale=2.0)[0] for p, r in pairs]
    assert student.fast.generate(prompts, 20, student.eos_id, student.pad_id, temperature=0,
                                 references=references, guidance_scale=2.0) == alone
    with pytest.raises(ValueError, match="as long as"):
        student.fast.generate(prompts, 5, student.eos_id, student.pad_id, references=[r[1:] for r in references],
                              guidance_scale=2.0)


def test_student_guidance_changes_outputs_and_stays_seeded(tiny_student):
    student = load_student(tiny_student)
    hi = student.encoding.relevance_range["headline"][1]

    def texts(**kw):
        return [o.text for o in student.generate(["lost cat", "ski trip"], "headline", relevance=hi, length=8,
                                                 n=2, seed=4, temperature=0, **kw)[0]]

    assert texts(guidance_scale=3.0) == texts(guidance_scale=3.0)
    assert texts(guidance_scale=1.0) == texts()  # the tiny checkpoint has no sampling.json: unguided
    out = student.generate(["lost cat"], "headline", relevance=hi, guidance_scale=3.0)[0][0]
    assert out.sampling == {"temperature": 0.7, "top_p": 0.95, "guidance_scale": 3.0, "repetition_penalty": 1.0,
                            "sibling_penalty": 1.0, "word_guard": False}


def test_sampling_settings_saved_with_the_checkpoint(tiny_student, tmp_path):
    checkpoint = tmp_path / "student"
    shutil.copytree(tiny_student, checkpoint)
    settings = {"headline": Sampling(temperature=0.9, guidance_scale=2.0)}
    save_sampling(checkpoint, settings, {"command": "test"})
    assert load_sampling(checkpoint) == settings
    student = load_student(checkpoint)
    assert student.sampling_for("headline") == settings["headline"]
    assert student.sampling_for("image_prompt") == Sampling()
    assert student.generate(["lost cat"], "headline")[0][0].sampling["guidance_scale"] == 2.0
    # a call's own values win over the saved ones
    assert student.generate(["lost cat"], "headline", temperature=0.2)[0][0].sampling["temperature"] == 0.2
    for bad in ({"temperature": -1}, {"top_p": 0}, {"guidance_scale": float("nan")}):
        with pytest.raises(ValueError):
            Sampling(**bad)
    (checkpoint / SAMPLING_FILE).write_text(json.dumps({"tasks": {"headline": {"temperature": "hot"}}}))
    with pytest.raises(CheckpointError, match="sampling.json|unreadable"):
        load_student(checkpoint)


def test_tune_picks_the_setting_that_meets_most_goals(tiny_student, tmp_path, monkeypatch):
    from udrl.cards import write_model_card
    from udrl.config import TuneConfig
    from udrl.tune import _rank, goal_margins, tune

    teacher = {"relevance_mean": 0.5, "diversity": 0.9}
    control = {"spearman": 1.0, "pearson": 0.7, "top": {"relevance_mean": 0.55, "diversity": 0.85, "novelty_mean": 0.8}}
    margins = goal_margins("image_prompt", control, teacher)
    assert all(m >= 0 for m in margins.values()) and set(margins) == {"spearman", "pearson", "relevance",
                                                                       "diversity", "novelty"}
    worse = goal_margins("image_prompt", {**control, "pearson": 0.5}, teacher)
    assert worse["pearson"] < 0 and _rank({"margins": margins}) > _rank({"margins": worse})
    # with the language metrics on both sides: non-word rate up to the teacher's + 0.5 points, subject kept
    # down to the teacher's - 5 points
    spoken = {**teacher, "non_word_rate": 0.02, "subject_kept": 0.8}
    fluent = {**control, "top": {**control["top"], "non_word_rate": 0.024, "subject_kept": 0.76}}
    language = goal_margins("image_prompt", fluent, spoken)
    assert language["non_word"] == pytest.approx(0.001) and language["subject_kept"] == pytest.approx(0.01)
    garbled = {**control, "top": {**control["top"], "non_word_rate": 0.05, "subject_kept": 0.5}}
    assert all(goal_margins("image_prompt", garbled, spoken)[k] < 0 for k in ("non_word", "subject_kept"))
    # among settings meeting every goal, the one with the widest closest margin wins, not the largest sum
    thin, even = {"margins": {"relevance": 0.5, "diversity": 0.01}}, {"margins": {"relevance": 0.1, "diversity": 0.05}}
    assert max([thin, even], key=_rank) is even

    checkpoint = tmp_path / "student"
    shutil.copytree(tiny_student, checkpoint)
    trials_file = tmp_path / "trials.json"
    config = dict(checkpoint=str(checkpoint), intents="data/intents/test.txt", tasks="headline", skip=60, limit=2,
                  samples=2, temperatures="0.7", repetition_penalties="1.0", trials=str(trials_file))
    result = tune(TuneConfig(**config, guidance_scales="1.0,2.0", top_ps="0.95"))
    saved = json.loads((checkpoint / SAMPLING_FILE).read_text())
    recorded = json.loads(trials_file.read_text())
    assert "trials" not in saved and saved["trials_file"] == str(trials_file)  # each stage its own file
    trials = recorded["trials"]["headline"]
    assert [t["sampling"]["guidance_scale"] for t in trials] == [1.0, 2.0]
    assert all(t["sampling"]["repetition_penalty"] == 1.0 for t in trials)
    assert saved["tasks"]["headline"] == max(trials, key=_rank)["sampling"] == result["sampling"]["headline"]
    assert saved["skip"] == 60 and saved["n_intents"] == 2 and recorded["teacher"]["headline"]["n"] == 4
    assert load_student(checkpoint).sampling_for("headline") == Sampling(**saved["tasks"]["headline"])
    chosen = max(trials, key=_rank)
    assert "length_mae" in chosen and "length" in chosen["margins"]  # finalists are checked on length too
    assert chosen["calibrated"] and all(t.get("calibrated") == ("length_curve" in t) for t in trials)
    # the chosen setting's length sweep is saved as the calibration the student reads length requests through
    assert saved["length_calibration"]["headline"] == sorted(chosen["length_curve"])
    assert load_student(checkpoint).length_calibration["headline"].points() == sorted(chosen["length_curve"])
    card = write_model_card(checkpoint).read_text()
    assert "## Sampling" in card and "| headline |" in card

    # a rerun on the same intents reuses the trials it finds; only new grid points are measured
    import udrl.tune

    measured, calibrations = [], []
    real, real_length = udrl.tune.relevance_control, udrl.tune.length_control
    monkeypatch.setattr(udrl.tune, "relevance_control",
                        lambda *a, **kw: measured.append((dict(a[0].length_calibration), kw)) or real(*a, **kw))
    monkeypatch.setattr(udrl.tune, "length_control",
                        lambda *a, **kw: calibrations.append(dict(a[0].length_calibration))
                        or real_length(*a, **kw))
    for trial in recorded["trials"]["headline"]:  # length sweeps to redo, under a calibration far off the mark
        trial.pop("length_curve", None)
        trial["sampling"].pop("repetition_penalty")  # as recorded before the penalty existed: still reused
    # a trial that swept other relevance commands (an earlier sweep) is measured again
    recorded["trials"]["headline"][0]["relevance_commands"] = [0.1, 0.5]
    remeasured = (recorded["trials"]["headline"][0]["sampling"]["guidance_scale"],
                  recorded["trials"]["headline"][0]["sampling"]["top_p"])
    saved["length_calibration"]["headline"] = [[5, 50.0], [6, 60.0]]
    (checkpoint / SAMPLING_FILE).write_text(json.dumps(saved))
    trials_file.write_text(json.dumps(recorded))
    tune(TuneConfig(**config, guidance_scales="1.0,2.0,3.0", top_ps="0.95,0.8"))
    screened = [(kw["guidance_scale"], kw["top_p"]) for calibration, kw in measured if not calibration]
    grid_order = [(1.0, 0.95), (1.0, 0.8), (2.0, 0.95), (2.0, 0.8), (3.0, 0.95), (3.0, 0.8)]
    new = {(1.0, 0.8), (2.0, 0.8), (3.0, 0.95), (3.0, 0.8), remeasured}
    assert screened == [setting for setting in grid_order if setting in new]
    rerun = json.loads((checkpoint / SAMPLING_FILE).read_text())
    rerun_trials = json.loads(trials_file.read_text())["trials"]["headline"]
    assert len(rerun_trials) == 6
    assert all(t["sampling"]["repetition_penalty"] == 1.0 for t in rerun_trials)
    assert rerun["commands"] == {"headline": rerun["command"]}
    # settings chosen by different runs: the model card names each task's command
    rerun["commands"]["image_prompt"] = "python -m udrl tune --tasks image_prompt"
    (checkpoint / SAMPLING_FILE).write_text(json.dumps(rerun))
    card = write_model_card(checkpoint).read_text()
    assert "- image_prompt: `python -m udrl tune --tasks image_prompt`" in card
    assert f"- headline: `{rerun['command']}`" in card
    assert calibrations and all(c == {} for c in calibrations)  # length sweeps send the commands as they are
    # finalists' relevance is measured again through their own calibration, the one saved for the winner
    finalists = [t for t in rerun_trials if "length_curve" in t]
    again = [(kw["guidance_scale"], kw["top_p"], c["headline"].points()) for c, kw in measured if c]
    assert again == [(t["sampling"]["guidance_scale"], t["sampling"]["top_p"], sorted(t["length_curve"]))
                     for t in finalists] and all(t["calibrated"] for t in finalists)
    winner = max(finalists, key=_rank)
    assert rerun["length_calibration"]["headline"] == sorted(winner["length_curve"])

    # other weights (a continued student): every trial is measured again, the teacher's figures are reused
    import udrl.teacher
    from safetensors.torch import load_file, save_file

    recorded = json.loads(trials_file.read_text())
    before = recorded["weights"]
    recorded["trials"]["image_prompt"] = recorded["trials"]["headline"]  # another task's trials, same weights
    trials_file.write_text(json.dumps(recorded))
    weights = load_file(checkpoint / "model.safetensors")
    save_file({k: v + 0.01 for k, v in weights.items()}, checkpoint / "model.safetensors", metadata={"format": "pt"})
    monkeypatch.setattr(udrl.teacher, "load_teacher", lambda *a, **kw: pytest.fail("the teacher ran again"))
    measured.clear()
    tune(TuneConfig(**config, guidance_scales="1.0,2.0", top_ps="0.95"))
    assert [(kw["guidance_scale"], kw["top_p"]) for c, kw in measured if not c] == [(1.0, 0.95), (2.0, 0.95)]
    again = json.loads(trials_file.read_text())
    assert len(again["trials"]["headline"]) == 2 and again["weights"] != before
    assert "image_prompt" not in again["trials"]  # trials of the old weights are dropped, not kept beside new ones


@pytest.mark.parametrize(("args", "message"), [
    (["--guidance-scales", "9"], "must lie in 1..5"),
    (["--temperatures", "0.7,hot"], "comma-separated numbers"),
    (["--samples", "1"], "at least 2"),
    (["--top-ps", "0"], "must lie in 0.05..1"),
])
def test_tune_cli_rejects_bad_grids_in_one_line(tiny_student, capsys, args, message):
    from udrl.__main__ import main

    assert main(["tune", "--checkpoint", str(tiny_student), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def _guided_target_by_hand(model, example: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output token, the guided and the plain log-distributions from unpadded single-sequence passes."""
    with torch.no_grad():
        command = model(input_ids=torch.tensor([example["input_ids"]])).logits[0]
        reference = model(input_ids=torch.tensor([example["reference_ids"]])).logits[0]
    guided = reference + example["scale"] * (command - reference)
    outputs = [t for t, label in enumerate(example["labels"][1:]) if label != -100]
    return guided[outputs].log_softmax(-1), command[outputs].log_softmax(-1)


def test_guidance_distillation_loss_and_training(tiny_student, tiny_corpus, tmp_path):
    from udrl.corpus import load_corpus
    from udrl.train import TrainConfig, collate, encode_records, guided_kl, train

    guide_dir = tmp_path / "guided"
    shutil.copytree(tiny_student, guide_dir)
    config = dict(corpus=str(tiny_corpus), init=str(guide_dir), distil_guidance=True, epochs=1, batch_size=16,
                  lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="guides at least one task"):  # nothing tuned: nothing to distil
        train(TrainConfig(out=str(tmp_path / "none"), state_dir=str(tmp_path / "s0"), **config))

    # the loss: KL from the guided distribution (command and reference rows) to one pass, output tokens only
    guide = load_student(guide_dir)
    rel_tokens = [t for t in guide.tokenizer.get_vocab() if t.startswith("<|rel:")]
    with torch.no_grad():  # the tiny student barely reads its command: make the command tokens matter
        embeddings = guide.model.get_input_embeddings().weight
        embeddings[guide.tokenizer.convert_tokens_to_ids(rel_tokens)] = torch.randn(
            len(rel_tokens), embeddings.shape[1], generator=torch.Generator().manual_seed(0))
    records = [r for r in load_corpus(tiny_corpus) if r["split"] == "test"]
    scales = {"headline": 30.0, "search_queries": 20.0}  # large: the tiny model's commands differ little
    examples = encode_records(records, guide.encoding, guide.tokenizer, 64, scales)
    assert {e["scale"] for e in examples} == {1.0, 20.0, 30.0}  # image_prompt and middle commands: unguided
    batch = collate(guide.pad_id)(examples)
    kl, tokens = 0.0, 0
    for example in examples:
        target, single = _guided_target_by_hand(guide.model, example)
        kl += float((target.exp() * (target - single)).sum())
        tokens += len(target)
    with torch.no_grad():
        before = float(guided_kl(guide.model, batch, guide.model))
    assert before == pytest.approx(kl / tokens, rel=1e-3) and before > 0.01
    student = copy.deepcopy(guide.model).eval()  # no dropout: the descent is deterministic
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-4)
    for _ in range(60):
        guided_kl(student, batch, guide.model).backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        assert float(guided_kl(student, batch, guide.model)) < 0.85 * before

    # the training run: the guide's temperature and top-p without guidance; the card says what was distilled
    tuned = {"headline": Sampling(0.9, 0.9, 30.0), "search_queries": Sampling(1.1, 0.95, 20.0)}
    save_sampling(guide_dir, tuned, {"command": "test"})
    out = tmp_path / "distilled"
    info = train(TrainConfig(out=str(out), state_dir=str(tmp_path / "s1"), **config))
    assert info["distilled_guidance"] == scales and len(info["history"]) == 1
    assert load_sampling(out) == {t: s.replace(guidance_scale=1.0) for t, s in tuned.items()}
    assert "guidance distillation (scales headline 30, search_queries 20)" in (out / "README.md").read_text()
    assert load_student(out).generate(["lost cat"], "headline")[0][0].sampling["guidance_scale"] == 1.0
