"""The app three ways: handlers called directly, a launched app through gradio_client, and a headless
Chromium that moves the slider and clicks Generate."""

from __future__ import annotations

import csv
import importlib
import os
import shutil
from pathlib import Path

import gradio as gr
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def app(tiny_student, tmp_path_factory):
    os.environ["UDRL_CHECKPOINT"] = str(tiny_student)
    os.environ["UDRL_RATINGS_DB"] = str(tmp_path_factory.mktemp("ratings") / "ratings.sqlite")
    import app as app_module

    app_module = importlib.reload(app_module)
    app_module.MODELS.start()
    assert app_module.MODELS.wait_teacher(120), app_module.MODELS.teacher_error
    yield app_module
    os.environ.pop("UDRL_CHECKPOINT")
    os.environ.pop("UDRL_RATINGS_DB")


def test_compare_shows_both_sides_with_rewards_and_speedup(app):
    teacher_rows, student_rows, summary = app.compare("lost cat poster", "headline", 0.6, 8, 2, 3)
    assert len(teacher_rows) == 2 and len(student_rows) == 2
    for row in teacher_rows + student_rows:
        assert isinstance(row[1], str) and -1 <= row[2] <= 1 and row[3] >= 0
    assert "Student speed-up" in summary and "tokens/s" in summary
    assert "teacher sampling: temperature 0.7, top-p 0.95; student sampling (the checkpoint" in summary


def test_steer_runs_student_only_and_notes_clamps(app):
    rows, summary = app.steer("holiday sale", "image_prompt", 5.0, 25, 1, 0)
    assert len(rows) == 1 and "relevance 5 is outside" in summary
    assert "the checkpoint's for this task): guidance 1, temperature 0.7" in summary  # tiny checkpoint: defaults
    assert "repetition penalty 1" in summary
    rows, summary = app.steer("holiday sale", "image_prompt", 0.5, 25, 1, 0, 0.3, 0.9, 9, False, 1.4)
    assert "guidance 9 is outside 1..5; used 5" in summary
    assert "(set by hand): guidance 5, temperature 0.3, top-p 0.9, repetition penalty 1.4" in summary
    _, summary = app.steer("holiday sale", "image_prompt", 0.5, 25, 1, 0, 0.3, 0.9, 1, False, 0)
    assert "repetition penalty 0 is outside 1..3; used 1" in summary
    with pytest.raises(gr.Error, match="repetition penalty must be a finite number"):
        app.steer("holiday sale", "image_prompt", 0.5, 25, 1, 0, 0.7, 0.95, 1, False, float("nan"))
    with pytest.raises(gr.Error, match="guidance must be a finite number"):
        app.steer("holiday sale", "image_prompt", 0.5, 25, 1, 0, 0.7, 0.95, float("inf"), False)


def test_word_guard_box_keeps_the_student_to_real_words(app):
    from udrl import rewards
    from udrl.lexicon import words

    intent = "a llama wearing sunglasses"
    free, summary = app.steer(intent, "image_prompt", 0.5, 12, 4, 0)
    assert "word guard" not in summary
    guarded, summary = app.steer(intent, "image_prompt", 0.5, 12, 4, 0, 0.7, 0.95, 1, True, 1, True)
    assert "word guard on" in summary and [r[1] for r in guarded] != [r[1] for r in free]
    # every word real but an output's last, which the token budget may cut inside a word
    assert max(rewards.non_word_rate([intent] * 4, [" ".join(words(r[1])[:-1]) for r in guarded])) == 0
    with pytest.raises(gr.Error, match="word guard must be true or false"):
        app.steer(intent, "image_prompt", 0.5, 12, 1, 0, 0.7, 0.95, 1, True, 1, "yes")


def test_steer_says_which_length_token_a_calibrated_request_was_sent_as(app, monkeypatch):
    from udrl.student.sampling import LengthCalibration

    calibration = {"image_prompt": LengthCalibration.from_points([[20, 22.0], [30, 33.0]])}
    monkeypatch.setattr(app.MODELS.student, "length_calibration", calibration)
    _, summary = app.steer("holiday sale", "image_prompt", 0.5, 25, 1, 0)
    assert "length 25 (sent as length token 23)" in summary  # 20 + 10 * 3/11 = 22.7 -> 23
    encoding = app.MODELS.student.encoding
    token = encoding.relevance_bin("image_prompt", encoding.clamp_relevance("image_prompt", 0.5)) + 1
    assert f"(relevance token {token} of {encoding.relevance_bins})" in summary


def test_sweep_returns_two_figures(app):
    rel_fig, len_fig, note = app.sweep("lost cat poster", "search_queries", 1, 0)
    assert len(rel_fig.data) >= 3 and len(len_fig.data) >= 3  # teacher band, y = x, student
    assert "Teacher band" in note


def test_task_controls_come_from_checkpoint(app):
    slider, guidance, penalty = app.task_controls("headline")
    lo, hi = app.MODELS.student.encoding.relevance_range["headline"]
    assert (slider.minimum, slider.maximum, slider.value) == (lo, hi, hi)
    assert guidance == app.MODELS.student.sampling_for("headline").guidance_scale
    assert penalty == app.MODELS.student.sampling_for("headline").repetition_penalty


def test_annotation_round_trip(app):
    an = app.annotate
    item, item_id, intent, a, b = an.next_item("ann", "my own intent", "bakery opening", "headline", seed=2)
    assert item_id == item["item_id"]
    assert intent == "bakery opening" and a and b and "model_a" not in item  # blind until the vote
    result = an.rate(item["item_id"], "ann", "A", "fine")
    assert result["saved"] and result["rating_id"] > 0
    assert {result["reveal"][side]["system"] for side in "AB"} == {"teacher", "student"}
    with pytest.raises(gr.Error, match="rated all 1 items"):  # one's own intent is a session of one
        an.next_item("ann", "my own intent", "bakery opening", "headline", seed=2)
    again = an.rate(item["item_id"], "ann", "tie")  # a changed mind is a new row; the first is kept
    rows = [r for r in an.ratings_store().rows() if r["item_id"] == item_id]
    assert [(r["rating_id"], r["verdict"], r["latest"]) for r in rows] == [
        (result["rating_id"], "A", 0), (again["rating_id"], "tie", 1)]
    with Path(an.export_csv()).open(newline="") as fh:
        exported = list(csv.DictReader(fh))
    assert len(exported) == an.ratings_store().count() and exported[-1]["verdict"] == "tie"


def test_page_warns_and_keeps_what_it_shows(app):
    an = app.annotate
    with pytest.warns(UserWarning, match="Enter your annotator name first"):
        outputs = an.show_next(None, "  ", "template test split", "", "headline")
    assert len(outputs) == an.NEXT_OUTPUTS and all(o == gr.skip() for o in outputs)
    with pytest.warns(UserWarning, match="Type your intent first"):
        outputs = an.show_next(None, "ann", "my own intent", "", "headline")
    assert all(o == gr.skip() for o in outputs)
    with pytest.warns(UserWarning, match="Load an item first"):
        outputs = an.vote(None, "ann", "A")
    assert len(outputs) == an.VOTE_OUTPUTS and all(o == gr.skip() for o in outputs)


def test_vote_reveals_the_systems_and_locks(app):
    an = app.annotate
    settings = ("cleo", "open-vocabulary test set", "", "headline", 5, "teacher", "student", 3)
    item, item_id, intent, a, b, comment, progress, revealed, *buttons = an.show_next(None, *settings)
    assert intent in an.read_intents(an.OPEN_TEST_INTENTS) and "**0 of 3 rated**" in progress and not revealed
    assert all(button.interactive for button in buttons)
    done, progress, revealed, label_a, label_b, *rest = an.vote(item, "cleo", "B", "")
    assert "**1 of 3 rated**" in progress and "Your vote, **B better**, is saved" in revealed
    assert "**teacher**" in revealed and "**student**" in revealed
    assert {label_a.label[len("Output A: "):], label_b.label[len("Output B: "):]} == {"teacher", "student"}
    assert not any(button.interactive for button in rest[:4])
    count = an.ratings_store().count()
    with pytest.warns(UserWarning, match="locked"):
        an.vote(done, "cleo", "A", "")
    assert an.ratings_store().count() == count
    following = an.show_next(done, *settings)
    assert following[0]["position"] != item["position"] and following[0]["rated"] == 1


def test_two_annotators_share_a_session_and_kappa_is_the_hand_computed_one(app):
    """Two annotators walk one session of 8 items (the committed-by-the-app student against another
    checkpoint) and vote by system; Cohen's kappa on the shared items is the one worked out by hand."""
    an = app.annotate
    store = an.ratings_store()
    settings = ("template test split", "", "search_queries", 7, "student", "checkpoints/student", 8)
    x, y = "student", "checkpoints/student"
    wanted = {"dana": [x, x, y, y, "tie", "tie", "both_bad", y],
              "eli": [x, y, y, y, "tie", "both_bad", "both_bad", x]}
    seen = {name: [] for name in wanted}
    for step in range(8):
        for name, verdicts in wanted.items():
            item, item_id, *_ = an.next_item(name, *settings)
            seen[name].append(item_id)
            sides = store.item(item_id)
            verdict = {sides["model_a"]: "A", sides["model_b"]: "B"}.get(verdicts[step], verdicts[step])
            an.rate(item_id, name, verdict)
    assert seen["dana"] == seen["eli"]  # the same items in the same order
    # by hand: 5 of 8 agree (p_o = 40/64); margins dana x2 y3 tie2 bad1, eli x2 y3 tie1 bad2, so
    # p_e = (2*2 + 3*3 + 2*1 + 1*2) / 64 = 17/64 and kappa = (40/64 - 17/64) / (1 - 17/64) = 23/47
    [pair] = [p for p in store.agreement() if {p["annotator_1"], p["annotator_2"]} == {"dana", "eli"}]
    assert pair["shared_items"] == 8 and pair["agreement"] == 0.625
    assert abs(pair["kappa"] - 23 / 47) < 1e-4
    print(f"\nkappa dana/eli: {pair['kappa']} (by hand 23/47 = {23 / 47:.4f})")
    with Path(an.export_agreement()).open(newline="") as fh:
        exported = [r for r in csv.DictReader(fh) if {r["annotator_1"], r["annotator_2"]} == {"dana", "eli"}]
    assert float(exported[0]["kappa"]) == pair["kappa"]
    [row] = [r for r in an.summary_table() if r[:3] == ["search_queries", y, x]]
    assert row[3:7] == [3 + 3, 2 + 2, 2 + 1, 1 + 2]  # y wins, x wins, tie, both bad: dana's + eli's
    with pytest.raises(gr.Error, match="rated all 8"):
        an.next_item("dana", *settings)


def test_item_sets_and_systems_are_checked(app, tmp_path):
    an = app.annotate
    upload = tmp_path / "mine.txt"
    upload.write_text("lost cat poster\n\n  jazz night flyer \n" + "x" * 900 + "\n", encoding="utf-8")
    assert an.item_set("file of intents", intents_upload=str(upload)) == (
        "file mine.txt", ["lost cat poster", "jazz night flyer"])
    name, intents = an.item_set("file of intents", intents_path="data/intents/open/test.txt")
    assert intents == an.read_intents("data/intents/open/test.txt")
    for path in (str(upload), "/etc/passwd", "../etc/hosts", "app.py"):
        with pytest.raises(gr.Error, match="inside the app's folder"):
            an.item_set("file of intents", intents_path=path)
    assert an.item_set("test intents")[0] == "template test split"  # the name API clients used before
    assert "checkpoints/student" in [value for _, value in an.system_choices()]
    for bad in ("/etc", "runs/../../etc", "nonsense"):
        with pytest.raises(gr.Error, match="unknown system"):
            an.system_name(bad)
    with pytest.raises(gr.Error, match="two different systems"):
        an.next_item("ann", "template test split", "", "headline", 0, "teacher", "teacher")


def test_bad_input_raises_clear_errors(app):
    import gradio as gr

    for intent in ("", "   ", "x" * 20000):
        with pytest.raises(gr.Error):
            app.compare(intent, "headline", 0.5, 10, 1, 0)
    with pytest.raises(gr.Error, match="unknown task"):
        app.steer("holiday sale", "poem", 0.5, 10, 1, 0)
    with pytest.raises(gr.Error, match="annotator"):
        app.annotate.next_item("", "test intents", "", "headline")


def test_client_compare_sweep_rate(server):
    url, client, _ = server
    teacher, student, summary = client.predict("lost cat poster", "image_prompt", 0.7, 20, 2, 1, api_name="/compare")
    assert len(teacher["data"]) == 2 and len(student["data"]) == 2 and "speed-up" in summary
    rel_plot, len_plot, note = client.predict("lost cat poster", "headline", 1, 0, api_name="/sweep")
    assert rel_plot and len_plot
    item_id, intent, a, b = client.predict("ann", "test intents", "", "headline", api_name="/next_item")
    assert intent and a and b
    result = client.predict(item_id, "ann", "B", "", api_name="/rate")
    assert result["saved"] is True and {result["reveal"][s]["system"] for s in "AB"} == {"teacher", "student"}
    api = client.view_api(print_info=False, return_format="dict")
    names = set(api["named_endpoints"])
    assert {"/compare", "/sweep", "/rate", "/next_item", "/summary", "/agreement", "/export_csv",
            "/export_agreement"} <= names


def test_browser_moves_slider_and_sees_outputs_and_plot(server, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    url, _, _ = server
    shot = Path(os.environ.get("UDRL_SCREENSHOT", tmp_path / "app.png"))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        page.locator("#generate").wait_for(timeout=60_000)
        # XSS probe: the intent is rendered as text, never as markup
        page.locator("#intent textarea").fill('<img src=x onerror="window.__xss=1;alert(1)">')
        slider = page.locator("#relevance input[type=range]")
        box = slider.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
        page.wait_for_function("document.querySelector('#summary').innerText.includes('command: relevance')",
                               timeout=60_000)  # the slider's release re-ran the student
        assert page.locator("#student-out [role=gridcell]").count() >= 5
        page.locator("#generate").click()
        page.wait_for_function("document.querySelector('#summary').innerText.includes('speed-up')",
                               timeout=120_000)
        page.locator("#sweep").click()
        page.locator("#relevance-plot .js-plotly-plot").wait_for(timeout=120_000)
        teacher_text = page.locator("#teacher-out").inner_text()
        student_text = page.locator("#student-out").inner_text()
        assert "relevance" in teacher_text and "relevance" in student_text
        assert page.evaluate("window.__xss === undefined") and not dialogs
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000


def test_browser_rates_with_the_keyboard_and_sees_the_reveal(server):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    url, _, _ = server
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        page.get_by_role("tab", name="Annotate").click()
        page.locator("#next-item").wait_for(timeout=60_000)
        page.keyboard.press("n")  # no name yet: a warning, and the page stays as it was
        page.get_by_text("Enter your annotator name first.").wait_for(timeout=60_000)
        assert page.locator(".error").count() == 0 and page.get_by_text("Error", exact=True).count() == 0
        assert page.locator("#output-a textarea").input_value() == ""
        page.locator("#annotator input, #annotator textarea").first.fill("keyboard")
        page.keyboard.press("Escape")  # leave the field: keys now vote and move on
        page.keyboard.press("n")
        page.wait_for_function("document.querySelector('#output-a textarea').value.length > 0", timeout=120_000)
        assert "0 of 50 rated" in page.locator("#progress").inner_text()
        assert page.locator("#reveal").inner_text().strip() == ""
        page.keyboard.press("2")
        page.wait_for_function("document.querySelector('#reveal').innerText.includes('was')", timeout=60_000)
        reveal = page.locator("#reveal").inner_text()
        assert "teacher" in reveal and "student" in reveal and "B better" in reveal and "locked" in reveal
        assert "1 of 50 rated" in page.locator("#progress").inner_text()
        page.wait_for_function("document.getElementById('vote-A').disabled", timeout=30_000)
        page.keyboard.press("1")  # locked: the key does nothing
        page.wait_for_timeout(1000)
        assert "B better" in page.locator("#reveal").inner_text()
        assert "1 of 50 rated" in page.locator("#progress").inner_text()
        browser.close()
