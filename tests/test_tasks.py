import pytest

from udrl.tasks import TASK_NAMES, TASKS, clean_output, echoes_example, get_task


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


def test_echoes_of_the_few_shot_examples_are_not_learned():
    from udrl.train import usable

    leak = {"task": "search_queries", "intent": "mobile avocado sale",
            "output": "avocado sale banner; new cafe announcement", "flags": []}
    assert echoes_example(leak["task"], leak["intent"], leak["output"]) and not usable(leak)
    # the intent calls for the phrase: not an echo
    assert not echoes_example("search_queries", "cafe opening", "cafe opening flyer; new cafe announcement")
    assert echoes_example("image_prompt", "milk shake", "A milk shake in the pine mountains at sunrise")
    # a phrase with one content word is plain English, even where an example has it ("on a wooden porch")
    clean = {**leak, "task": "image_prompt", "intent": "milk shake", "output": "A milk shake on a wooden table"}
    assert not echoes_example(clean["task"], clean["intent"], clean["output"]) and usable(clean)
    assert not usable({**clean, "flags": ["refusal"]})


def test_a_headline_in_the_search_queries_form_is_not_learnt():
    """A headline joining phrases with the queries' ";" (an earlier student's) is left out of training; the
    teacher's image prompts use ";" as English does and stay, as do search queries."""
    from udrl.train import usable

    leak = {"task": "headline", "intent": "origami workshop", "output": "Origami workshop; origami project!",
            "flags": []}
    assert get_task("headline").takes_foreign_form(leak["output"]) and not usable(leak)
    assert usable({**leak, "output": "Fold Your Story: Origami for Everyone!"})
    assert usable({**leak, "task": "image_prompt",
                   "output": "Paper cranes on a wooden table; soft morning light, origami workshop for seniors"})
    assert usable({**leak, "task": "search_queries", "output": "origami workshop flyer; paper craft class poster"})
