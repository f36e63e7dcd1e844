from udrl import rewards


def test_relevance_orders_hand_picked_pairs():
    intents = ["lost cat poster"] * 3 + ["holiday sale"] * 3
    outputs = [
        "missing orange tabby cat, have you seen him? reward poster",
        "a bowl of ramen on a wooden table",
        "quarterly tax filing deadline reminder",
        "christmas discount banner with gift boxes and big savings",
        "a quiet mountain lake at dawn",
        "database migration guide for engineers",
    ]
    rel = rewards.relevance(intents, outputs)
    assert rel[0] > rel[1] and rel[0] > rel[2]
    assert rel[3] > rel[4] and rel[3] > rel[5]
    assert all(-1.0 <= r <= 1.0 for r in rel)


def test_copy_of_intent_is_relevant_but_not_novel():
    [score] = rewards.score(["lost cat poster"], ["Lost cat poster"])
    assert score["relevance"] > 0.95
    assert score["novelty"] == 0.0
    assert score["length"] == 3


def test_novelty_length_and_diversity():
    assert rewards.novelty(["lost cat"], ["lost dog found"]) == [2 / 3]
    assert rewards.length(["one two  three"]) == [3]
    assert rewards.diversity(["a b c", "a b c"]) == 0.5
    assert rewards.diversity(["a b c", "d e f"]) == 1.0
    assert rewards.relevance([], []) == []
