import pytest

from udrl.tasks import TASK_NAMES, TASKS, clean_output, get_task


@pytest.mark.parametrize(("task", "raw", "expected", "flags"), [
    ("headline", '"Unwrap Big Savings"\nMore text', "Unwrap Big Savings", []),
    ("headline", "Headline: Fresh From the Oven", "Fresh From the Oven", []),
    ("headline", "  \n\n", "", ["empty"]),
    ("headline", "I'm sorry, I cannot help with that.", "I'm sorry, I cannot help with that.", ["refusal"]),
    ("search_queries", "lost cat poster\nmissing pet flyer\nfound dog sign\nextra", 
     "lost cat poster; missing pet flyer; found dog sign", []),
    ("search_queries", "Queries: a b; c d; e f; g h", "a b; c d; e f", []),
    ("image_prompt", "1. Prompt: soft light, soft light, red barn at dusk, soft light",
     "soft light, red barn at dusk", []),
])
def test_clean_output(task, raw, expected, flags):
    text, got_flags = clean_output(task, raw)
    assert text == expected
    assert [f for f in got_flags if f != "short"] == flags


def test_truncated_answer_loses_unfinished_phrase():
    raw = "A red barn at dusk with warm light, soft fog over the fields, and a lone tree stan"
    text, _ = clean_output("image_prompt", raw, truncated=True)
    assert text == "A red barn at dusk with warm light, soft fog over the fields"


def test_every_task_has_instruction_and_examples():
    assert set(TASK_NAMES) == {"image_prompt", "search_queries", "headline"}
    for task in TASKS.values():
        msgs = task.messages("holiday sale")
        assert msgs[0]["role"] == "system" and msgs[-1]["content"].endswith("holiday sale")
        assert len(task.examples) >= 2


def test_unknown_task_names_choices():
    with pytest.raises(ValueError, match="image_prompt"):
        get_task("poem")
