"""The Annotate tab: blind pairwise ratings of two systems' outputs, in sessions annotators can share.

An item set (the template test split, the open-vocabulary test set, a file of intents, or one's own intent)
is shuffled with a seed into a session; two annotators who choose the same set, seed, size, task and systems
get the same session, and so the same items, outputs and sides in the same order (their agreement can be
measured). The systems are the teacher, the committed student, or any other student checkpoint under
``checkpoints/`` or ``runs/``. After a vote the page says which system wrote which side and the vote is
locked; a changed mind (through the API) is a new row, never a change.

``build_annotate_tab`` lays the tab out; the handlers are plain functions, tested without a server.
``next_item`` and ``rate`` raise ``gr.Error`` (the API's answer); ``show_next`` and ``vote``, the page's,
turn the same problems into warnings and leave the page as it was.
"""

from __future__ import annotations

import html
import math
import os
import random
import tempfile
import threading
from pathlib import Path

import gradio as gr

from udrl.config import TEACHER_TEMPERATURE, TEACHER_TOP_P
from udrl.corpus import read_intents
from udrl.demo.annotations import (STUDENT, TEACHER, VERDICTS, AnnotationError, RatingStore, clean_annotator,
                                   pair_order)
from udrl.demo.inputs import InputError, clean_intent
from udrl.demo.service import ModelUnavailable, Models
from udrl.student import CheckpointError, Student, load_student
from udrl.tasks import TASK_NAMES

TEST_INTENTS = "data/intents/test.txt"
OPEN_TEST_INTENTS = "data/intents/open/test.txt"
ITEM_SETS = {"template test split": TEST_INTENTS, "open-vocabulary test set": OPEN_TEST_INTENTS}
FILE_SET, OWN_SET = "file of intents", "my own intent"
SOURCES = [*ITEM_SETS, FILE_SET, OWN_SET]
SOURCE_ALIASES = {"test intents": "template test split"}  # the name API clients used before item sets
CHECKPOINT_ROOTS = ("checkpoints", "runs")
DEFAULT_SIZE, MAX_SIZE = 50, 1000
MAX_FILE_BYTES = 2_000_000
EMPTY_OUTPUT = "(no output)"
VERDICT_LABELS = {"A": "A better", "B": "B better", "tie": "Tie", "both_bad": "Both bad"}
KEYS = {"A": "1", "B": "2", "tie": "3", "both_bad": "4"}
SUMMARY_HEADERS = ["task", "system 1", "system 2", "1 wins", "2 wins", "tie", "both bad", "1's win rate",
                   "95 % CI"]
AGREEMENT_HEADERS = ["annotator 1", "annotator 2", "shared items", "agreement", "Cohen's kappa"]

_models: Models | None = None
_store: RatingStore | None = None
_store_error: str | None = None
_students: dict[str, tuple[Student, threading.Lock]] = {}
_students_lock = threading.Lock()


def use(models: Models) -> None:
    """The app's models serve the tab; the ratings store and other checkpoints are opened afresh."""
    global _models, _store, _store_error
    _models, _store, _store_error = models, None, None
    _students.clear()


def ratings_store() -> RatingStore:
    """The ratings database, opened once; a clear error if its path is not writable."""
    global _store, _store_error
    if _store is None and _store_error is None:
        try:
            _store = RatingStore()
        except AnnotationError as err:
            _store_error = str(err)
    if _store is None:
        raise gr.Error(f"Ratings cannot be saved: {_store_error}")
    return _store


def _fail(err: Exception) -> gr.Error:
    return gr.Error(html.escape(str(err)), title="Cannot run this request")


# -- systems -------------------------------------------------------------------------------------------
def checkpoint_systems() -> list[str]:
    """Student checkpoints other than the app's own: folders under ``checkpoints/`` or ``runs/`` (one or two
    levels down) with ``config.json`` and ``udrl.json``."""
    own = Path(_models.checkpoint).resolve() if _models else None
    found = []
    for root in CHECKPOINT_ROOTS:
        for config in sorted([*Path(root).glob("*/config.json"), *Path(root).glob("*/*/config.json")]):
            folder = config.parent
            if (folder / "udrl.json").is_file() and folder.resolve() != own:
                found.append(folder.as_posix())
    return found


def system_choices() -> list[tuple[str, str]]:
    """(label, name) of every system the tab can compare."""
    student = _models.checkpoint if _models else "checkpoints/student"
    return [("teacher (SmolLM2-135M-Instruct)", TEACHER), (f"student ({student})", STUDENT),
            *((path, path) for path in checkpoint_systems())]


def system_name(value) -> str:
    """``teacher``, ``student`` or the path of another checkpoint under ``checkpoints/`` or ``runs/``."""
    name = str(value or "").strip()
    if name in (TEACHER, STUDENT):
        return name
    path = Path(name)
    if not name or path.is_absolute() or ".." in path.parts or path.parts[0] not in CHECKPOINT_ROOTS:
        raise gr.Error(f"unknown system {html.escape(name[:80])!r}: choose teacher, student or a checkpoint "
                       f"folder under {' or '.join(CHECKPOINT_ROOTS)}/")
    if _models and path.resolve() == Path(_models.checkpoint).resolve():
        return STUDENT
    if not (path / "config.json").is_file() or not (path / "udrl.json").is_file():
        raise gr.Error(f"{html.escape(path.as_posix())} is not a student checkpoint (no config.json and "
                       "udrl.json): train one with `python -m udrl train --out` there")
    return path.as_posix()


def _student(system: str) -> tuple[Student, threading.Lock]:
    """The student behind a system name, with the lock its calls take; other checkpoints load once."""
    if system == STUDENT:
        return _models.student, _models.student_lock
    with _students_lock:
        if system not in _students:
            _students[system] = (load_student(system), threading.Lock())
        return _students[system]


def sample(system: str, intent: str, task: str, seed: int) -> dict:
    """One output of a system for an item: ``{"system", "output", "version", "details"}``."""
    if system == TEACHER:
        teacher = _models.teacher
        with _models.teacher_lock:
            out = teacher.generate([intent], task, n=1, seed=seed, temperature=TEACHER_TEMPERATURE,
                                   top_p=TEACHER_TOP_P)[0][0]
        return {"system": system, "output": out.text or EMPTY_OUTPUT, "version": _models.teacher_version,
                "details": {"seed": seed, "decoding": {"temperature": TEACHER_TEMPERATURE, "top_p": TEACHER_TOP_P}}}
    student, lock = _student(system)
    with lock:
        for attempt in range(3):  # an empty answer is no use to an annotator: sample again
            out = student.generate([intent], task, n=1, seed=seed + attempt)[0][0]
            if out.text:
                break
    command = {k: v for k, v in out.command.items() if k != "task"}
    return {"system": system, "output": out.text or EMPTY_OUTPUT, "version": student.version,
            "details": {"seed": seed + attempt, "decoding": {**out.sampling, **command}}}


# -- item sets and sessions ----------------------------------------------------------------------------
def _file_intents(path: str, uploaded: bool) -> list[str]:
    """Usable intents of a file: one a line; lines too long or empty are left out. A path typed in must lie
    inside the app's folder and end in .txt (the page must not read other files of the server)."""
    file = Path(path)
    if not uploaded:
        root = Path.cwd().resolve()
        file = (root / file).resolve()
        if not file.is_relative_to(root) or file.suffix != ".txt":
            raise gr.Error("a path must name a .txt file inside the app's folder, e.g. data/intents/train.txt; "
                           "upload any other file")
    if not file.is_file():
        raise gr.Error(f"no file at {html.escape(str(path))}")
    if file.stat().st_size > MAX_FILE_BYTES:
        raise gr.Error(f"the file is over {MAX_FILE_BYTES // 1_000_000} MB: split it")
    try:
        lines = read_intents(file)
    except UnicodeDecodeError:
        raise gr.Error("the file is not UTF-8 text: save it as plain text, one intent a line") from None
    intents = []
    for line in lines:
        try:
            intents.append(clean_intent(line))
        except InputError:
            continue
    if not intents:
        raise gr.Error("the file holds no usable intent (one a line, up to 500 characters)")
    return list(dict.fromkeys(intents))


def item_set(source, own_intent="", intents_path="", intents_upload=None) -> tuple[str, list[str]]:
    """(name, intents) of an item set."""
    source = SOURCE_ALIASES.get(source, source)
    if source in ITEM_SETS:
        try:
            return source, read_intents(ITEM_SETS[source])
        except FileNotFoundError:
            raise gr.Error(f"{ITEM_SETS[source]} is missing: restore it with git, or rate a file of intents or "
                           "your own intent") from None
    if source == FILE_SET:
        if intents_upload:
            return f"file {Path(str(intents_upload)).name}", _file_intents(str(intents_upload), uploaded=True)
        if str(intents_path or "").strip():
            path = str(intents_path).strip()
            return f"file {path}", _file_intents(path, uploaded=False)
        raise gr.Error("Upload a file of intents (one a line) or type its path first.")
    if source == OWN_SET:
        try:
            return source, [clean_intent(own_intent)]
        except InputError as err:
            raise gr.Error(f"Type your intent first: {err}.") from None
    raise gr.Error(f"items come from one of: {', '.join(SOURCES)}")


def _whole(value, default: int, lo: int, hi: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return default if not math.isfinite(number) else int(min(max(round(number), lo), hi))


def open_session(source, own_intent, task, seed=0, system_1=TEACHER, system_2=STUDENT, size=DEFAULT_SIZE,
                 intents_path="", intents_upload=None) -> dict:
    """The session these settings name (the same for every annotator who chooses them)."""
    if task not in TASK_NAMES:
        raise gr.Error(f"unknown task; choose one of: {', '.join(TASK_NAMES)}")
    systems = (system_name(system_1), system_name(system_2))
    if systems[0] == systems[1]:
        raise gr.Error("Choose two different systems to compare.")
    name, intents = item_set(source, own_intent, intents_path, intents_upload)
    try:
        return ratings_store().open_session(name, intents, task, systems, _whole(seed, 0, 0, 2**31 - 1),
                                            _whole(size, DEFAULT_SIZE, 1, MAX_SIZE))
    except AnnotationError as err:
        raise _fail(err) from None


def session_item(session: dict, position: int) -> dict:
    """The item at a position of a session: the stored one, or one generated now and stored for everyone
    (its seed and sides come from the session id and the position, so whoever makes it, it is the same)."""
    store = ratings_store()
    item = store.session_item(session["session_id"], position)
    if item is not None:
        return item
    intent, task = session["intents"][position], session["task"]
    rng = random.Random(f"{session['session_id']}/{position}")
    seed = rng.randrange(2**31)
    first, second = session["systems"]
    a, b = (second, first) if rng.random() < 0.5 else (first, second)
    try:
        sides = [sample(system, intent, task, seed) for system in (a, b)]
    except (ModelUnavailable, CheckpointError) as err:
        raise _fail(err) from None
    student = next((s["details"]["decoding"] for s in sides if s["system"] != TEACHER), {})
    try:
        return store.add_pair(intent, task, *sides, relevance=student.get("relevance"), length=student.get("length"),
                              session_id=session["session_id"], position=position)
    except AnnotationError as err:
        raise _fail(err) from None


def progress_text(session: dict, rated: int) -> str:
    s1, s2 = pair_order(session["systems"])
    done = " All rated: thank you." if rated >= session["size"] else ""
    return (f"**{rated} of {session['size']} rated**{done}  \nSession `{session['session_id']}`: "
            f"{html.escape(session['name'])}, seed {session['seed']}, {session['task']}, {html.escape(s1)} vs "
            f"{html.escape(s2)}. Anyone with the same settings rates the same items in the same order.")


# -- handlers ------------------------------------------------------------------------------------------
def next_item(annotator, source, own_intent, task, seed=0, system_1=TEACHER, system_2=STUDENT, size=DEFAULT_SIZE,
              intents_path="", intents_upload=None, after=None):
    """The annotator's next unrated item of the session these settings name (after position ``after``, if
    given, wrapping round): ``(item, item_id, intent, output_a, output_b)``; the sides are blind."""
    annotator = clean_annotator(annotator)
    if not annotator:
        raise gr.Error("Enter your annotator name first.")
    session = open_session(source, own_intent, task, seed, system_1, system_2, size, intents_path, intents_upload)
    rated = ratings_store().rated_positions(session["session_id"], annotator)
    left = [p for p in range(session["size"]) if p not in rated]
    if not left:
        raise gr.Error(f"You have rated all {session['size']} items of this session: choose another seed or "
                       "item set for a new one.")
    position = next((p for p in left if after is not None and p > after), left[0])
    about = {k: v for k, v in session.items() if k != "intents"}
    item = {**session_item(session, position), "session": about, "rated": len(rated)}
    return item, item["item_id"], item["intent"], item["output_a"], item["output_b"]


def reveal(item_id: str) -> dict:
    """Which system wrote which side of an item (shown once it has been rated)."""
    item = ratings_store().item(item_id)
    return {side: {"system": item[f"model_{s}"], "version": item[f"version_{s}"]}
            for side, s in (("A", "a"), ("B", "b"))}


def rate(item_id, annotator, verdict, comment=""):
    """Save one rating (``A``, ``B``, ``tie`` or ``both_bad``) for an item; returns its id once durable and
    the systems behind the two sides. Rating an item again adds a row; the first stays as it was."""
    try:
        rating_id = ratings_store().rate(str(item_id or ""), annotator, verdict, comment)
    except AnnotationError as err:
        raise _fail(err) from None
    return {"rating_id": rating_id, "saved": True, "reveal": reveal(str(item_id))}


def _skip(count: int) -> tuple:
    return tuple(gr.skip() for _ in range(count))


def _buttons(active: bool) -> tuple:
    return tuple(gr.Button(interactive=active) for _ in VERDICTS)


NEXT_OUTPUTS = 8 + len(VERDICTS)


def show_next(item, annotator, source, own_intent, task, seed=0, system_1=TEACHER, system_2=STUDENT,
              size=DEFAULT_SIZE, intents_path="", intents_upload=None):
    """The page's Next: a new blind item with the vote buttons on, or a warning with the page unchanged."""
    after = item.get("position") if item and item.get("position") is not None else None
    try:
        new, item_id, intent, a, b = next_item(annotator, source, own_intent, task, seed, system_1, system_2, size,
                                               intents_path, intents_upload, after=after)
    except gr.Error as err:
        gr.Warning(err.message)
        return _skip(NEXT_OUTPUTS)
    return (new, item_id, intent, gr.Textbox(value=a, label="Output A"), gr.Textbox(value=b, label="Output B"), "",
            progress_text(new["session"], new["rated"]), "", *_buttons(True))


def _side_label(side: dict) -> str:
    """Markdown naming a side's system and its version (as code, so no part of it reads as a link)."""
    def code(text) -> str:
        return f"`{str(text).replace('`', '')}`"

    where = f"{code(_models.checkpoint)}, " if side["system"] == STUDENT and _models is not None else ""
    return f"**{html.escape(side['system'])}** ({where}{code(side['version'])})"


VOTE_OUTPUTS = 5 + len(VERDICTS) + 2


def vote(item, annotator, verdict, comment=""):
    """The page's vote: saved, then the identities shown and the buttons locked until Next."""
    if not item:
        gr.Warning("Load an item first: press Next item (N).")
        return _skip(VOTE_OUTPUTS)
    if item.get("rating_id"):
        gr.Warning(f"Your vote on this item is locked (rating #{item['rating_id']}): press Next item (N).")
        return _skip(VOTE_OUTPUTS)
    try:
        result = rate(item["item_id"], annotator, verdict, comment)
    except gr.Error as err:
        gr.Warning(err.message)
        return _skip(VOTE_OUTPUTS)
    sides = result["reveal"]
    done = {**item, "rating_id": result["rating_id"], "verdict": verdict, "rated": item["rated"] + 1}
    text = (f"**A** was {_side_label(sides['A'])} · **B** was {_side_label(sides['B'])}. "
            f"Your vote, **{VERDICT_LABELS[verdict]}**, is saved as rating #{result['rating_id']} and locked. "
            "Press Next item (N).")
    labels = (gr.Textbox(label=f"Output A: {sides['A']['system']}"),
              gr.Textbox(label=f"Output B: {sides['B']['system']}"))
    return (done, progress_text(done["session"], done["rated"]), text, *labels, *_buttons(False), summary_table(),
            agreement_table())


def summary_table():
    """Win rates per task and pair of systems (the first system's, over decisive votes)."""
    rows = []
    for s in ratings_store().summary():
        ci = f"{s['ci95'][0]:.2f}–{s['ci95'][1]:.2f}" if s["ci95"] else "–"
        rate_ = f"{s['win_rate']:.2f}" if s["win_rate"] is not None else "–"
        rows.append([s["task"], s["system_1"], s["system_2"], s["wins_1"], s["wins_2"], s["tie"], s["both_bad"],
                     rate_, ci])
    return rows


def agreement_table():
    """Cohen's kappa of every two annotators over the items both rated."""
    return [[a["annotator_1"], a["annotator_2"], a["shared_items"], a["agreement"],
             "–" if a["kappa"] is None else a["kappa"]] for a in ratings_store().agreement()]


def export_csv():
    """Every rating with its item (one row per vote, ``latest`` marking the one that counts)."""
    path = os.path.join(tempfile.mkdtemp(prefix="udrl-ratings-"), "ratings.csv")
    ratings_store().export_csv(path)
    return path


def export_agreement():
    """Cohen's kappa of every two annotators with shared items, as CSV."""
    path = os.path.join(tempfile.mkdtemp(prefix="udrl-agreement-"), "agreement.csv")
    ratings_store().export_agreement_csv(path)
    return path


# -- layout --------------------------------------------------------------------------------------------
# Keys 1-4 press the vote buttons, N presses Next; not while typing in a field (Esc leaves the field).
KEYS_JS = """
if (!window.__udrlAnnotateKeys) {
  window.__udrlAnnotateKeys = true;
  const buttons = {"1": "vote-A", "2": "vote-B", "3": "vote-tie", "4": "vote-both_bad", "n": "next-item",
                   "N": "next-item"};
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof Element && target.closest("input, textarea, select, [contenteditable='true']");
    if (typing) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const button = document.getElementById(buttons[event.key]);
    if (!button || button.offsetParent === null || button.disabled) return;  // another tab, or a locked vote
    event.preventDefault();
    button.click();
  });
}
"""
KEYS_HTML = ("<p class='annotate-keys'>Keys: <kbd>1</kbd> A better · <kbd>2</kbd> B better · <kbd>3</kbd> tie · "
             "<kbd>4</kbd> both bad · <kbd>N</kbd> next item (<kbd>Esc</kbd> leaves a text field first)</p>")


def build_annotate_tab(task_choices: list[tuple[str, str]]) -> None:
    """The Annotate tab's layout and events (inside the app's ``gr.Blocks``)."""
    with gr.Tab("Annotate"):
        gr.Markdown("Which output serves the intent better? The sides are shuffled for every item; who wrote "
                    "which is shown after your vote, which is then locked.")
        with gr.Row():
            annotator = gr.Textbox(label="Annotator name", max_lines=1, elem_id="annotator")
            task = gr.Radio(task_choices, value="image_prompt", label="Task", elem_id="annotate-task")
        with gr.Row():
            source = gr.Radio(SOURCES, value=SOURCES[0], label="Items from", elem_id="item-set")
            own_intent = gr.Textbox(label="Your intent (for 'my own intent')", max_lines=1, elem_id="own-intent")
        with gr.Row():
            choices = system_choices()
            system_1 = gr.Dropdown(choices, value=TEACHER, label="System 1", allow_custom_value=True)
            system_2 = gr.Dropdown(choices, value=STUDENT, label="System 2", allow_custom_value=True)
            seed = gr.Number(value=0, precision=0, minimum=0, label="Session seed",
                             info="Same settings, same items in the same order")
            size = gr.Number(value=DEFAULT_SIZE, precision=0, minimum=1, maximum=MAX_SIZE, label="Items per session")
        with gr.Accordion("File of intents", open=False):
            with gr.Row():
                intents_path = gr.Textbox("", label="Path (a .txt file in the app's folder)", max_lines=1,
                                          placeholder="data/intents/train.txt")
                intents_upload = gr.File(label="or upload one (one intent a line)", file_types=[".txt"],
                                         type="filepath")
        with gr.Row():
            next_btn = gr.Button("Next item (N)", variant="primary", elem_id="next-item", scale=1)
            progress = gr.Markdown(elem_id="progress")
        item = gr.State(None)
        with gr.Row():
            intent = gr.Textbox(label="Intent", interactive=False, scale=4, elem_id="annotate-intent")
            item_id = gr.Textbox(label="Item id", interactive=False, scale=1)
        with gr.Row():
            out_a = gr.Textbox(label="Output A", interactive=False, lines=3, elem_id="output-a")
            out_b = gr.Textbox(label="Output B", interactive=False, lines=3, elem_id="output-b")
        comment = gr.Textbox(label="Comment (optional)", max_lines=2)
        with gr.Row():
            buttons = {v: gr.Button(f"{VERDICT_LABELS[v]} ({KEYS[v]})", elem_id=f"vote-{v}", interactive=False)
                       for v in VERDICTS}
        revealed = gr.Markdown(elem_id="reveal")
        gr.HTML(KEYS_HTML, js_on_load=KEYS_JS, elem_id="annotate-keys")
        gr.Markdown("### Win rate per pair of systems (system 1's, over decisive votes; 95 % Wilson interval)")
        summary = gr.Dataframe(headers=SUMMARY_HEADERS, interactive=False, elem_id="annotate-summary")
        gr.Markdown("### Agreement between annotators (Cohen's kappa on the items both rated)")
        agreement = gr.Dataframe(headers=AGREEMENT_HEADERS, interactive=False, elem_id="annotate-agreement")
        with gr.Row():
            refresh_btn = gr.Button("Refresh summary")
            export_btn = gr.Button("Export CSV")
        with gr.Row():
            csv_file = gr.File(label="ratings.csv")
            agreement_file = gr.File(label="agreement.csv")

    settings = [annotator, source, own_intent, task, seed, system_1, system_2, size, intents_path, intents_upload]
    next_btn.click(show_next, [item, *settings],
                   [item, item_id, intent, out_a, out_b, comment, progress, revealed, *buttons.values()],
                   api_visibility="private")
    for verdict, button in buttons.items():
        button.click(vote, [item, annotator, gr.State(verdict), comment],
                     [item, progress, revealed, out_a, out_b, *buttons.values(), summary, agreement],
                     api_visibility="private")
    # API-only endpoints (README and docs/annotation.md): a blind item, and a rating by item id. The item set
    # is free text there, so the name clients used before item sets ("test intents") still answers.
    api_item, api_id, api_intent, api_a, api_b = (gr.State(None), *(gr.Textbox(visible=False) for _ in range(4)))
    api_source = gr.Textbox(SOURCES[0], visible=False)
    api_next = gr.Button(visible=False)
    api_next.click(next_item, [annotator, api_source, *settings[2:]], [api_item, api_id, api_intent, api_a, api_b],
                   api_name="next_item")
    api_verdict = gr.Textbox(visible=False)
    api_result = gr.JSON(visible=False)
    api_rate = gr.Button(visible=False)
    api_rate.click(rate, [api_id, annotator, api_verdict, comment], api_result, api_name="rate")
    refresh_btn.click(summary_table, None, summary, api_name="summary")
    refresh_btn.click(agreement_table, None, agreement, api_name="agreement")
    export_btn.click(export_csv, None, csv_file, api_name="export_csv")
    export_btn.click(export_agreement, None, agreement_file, api_name="export_agreement")
