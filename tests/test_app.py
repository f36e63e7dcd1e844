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


def test_steer_says_which_length_token_a_calibrated_request_was_sent_as(app, monkeypatch):
    from udrl.student.sampling import LengthCalibration

    calibration = {"image_prompt": LengthCalibration.from_points([[20, 22.0], [30, 33.0]])}
    monkeypatch.setattr(app.MODELS.student, "length_calibration", calibration)
    _, summary = app.steer("holiday sale", "image_prompt", 0.5, 25, 1, 0)
    assert "length 25 (sent as length token 23)" in summary  # 20 + 10 * 3/11 = 22.7 -> 23


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
    item, item_id, intent, a, b = app.next_item("ann", "my own intent", "bakery opening", "headline", seed=2)
    assert item_id == item["item_id"]
    assert intent == "bakery opening" and a and b
    result = app.rate(item["item_id"], "ann", "A", "fine")
    assert result["saved"] and result["rating_id"] > 0
    new_item, *_ , saved, summary = app.rate_and_next(item, "ann", "tie", "", "test intents", "", "headline")
    assert "Saved rating" in saved and summary[0][0] == "headline"
    with Path(app.export_csv()).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == app.ratings_store().count() and rows[-1]["verdict"] == "tie"


def test_bad_input_raises_clear_errors(app):
    import gradio as gr

    for intent in ("", "   ", "x" * 20000):
        with pytest.raises(gr.Error):
            app.compare(intent, "headline", 0.5, 10, 1, 0)
    with pytest.raises(gr.Error, match="unknown task"):
        app.steer("holiday sale", "poem", 0.5, 10, 1, 0)
    with pytest.raises(gr.Error, match="annotator"):
        app.next_item("", "test intents", "", "headline")


def test_client_compare_sweep_rate(server):
    url, client, _ = server
    teacher, student, summary = client.predict("lost cat poster", "image_prompt", 0.7, 20, 2, 1, api_name="/compare")
    assert len(teacher["data"]) == 2 and len(student["data"]) == 2 and "speed-up" in summary
    rel_plot, len_plot, note = client.predict("lost cat poster", "headline", 1, 0, api_name="/sweep")
    assert rel_plot and len_plot
    item_id, intent, a, b = client.predict("ann", "test intents", "", "headline", api_name="/next_item")
    assert intent and a and b
    result = client.predict(item_id, "ann", "B", "", api_name="/rate")
    assert result["saved"] is True
    api = client.view_api(print_info=False, return_format="dict")
    names = set(api["named_endpoints"])
    assert {"/compare", "/sweep", "/rate", "/next_item"} <= names


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
