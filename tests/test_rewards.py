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
    # beyond the intent: the pairs that hold a word of it do not count, the rest still do
    same_subject = ["Lost cat: come home", "Lost cat: reward offered"]
    assert rewards.diversity(same_subject) == 5 / 6 and rewards.distinct_pairs(same_subject) == (5, 6)
    assert rewards.distinct_pairs(same_subject, beyond="lost cat") == (2, 2)
    assert rewards.distinct_pairs(["lost cat: come home"] * 2, beyond="lost cat") == (1, 2)
    assert rewards.distinct_pairs(["lost cat"] * 3, beyond="lost cat") == (0, 0)  # nothing beyond the subject
    assert rewards.relevance([], []) == []


def test_non_word_rate_counts_invented_and_mangled_words():
    # the garbled outputs a student wrote for these intents, and the teacher's
    intents = ["vintage typewriter repair", "a llama wearing sunglasses", "a llama wearing sunglasses"]
    outputs = ["A vintage abewriter cler cons typer announcement",
               "A llama in sunglasses on a sunny beach, photorealistic",
               "Fainted-stanging triminen tonsored llama"]
    rates = rewards.non_word_rate(intents, outputs)
    assert rates[0] == 2 / 7  # abewriter, typer ("cler" and "cons" are in the word list)
    assert rates[1] == 0.0  # inflections and modern words count as English
    assert rates[2] == 3 / 5  # stanging, triminen, tonsored
    assert rewards.non_word_rate(["Zanzibar postcard"], ["Zanzibar at dawn"]) == [0.0]  # words of the intent
    assert rewards.non_word_rate(["x"], [""]) == [0.0]


def test_subject_kept_needs_every_content_word_in_any_inflection():
    intents = ["lost cat poster", "a llama wearing sunglasses", "a llama wearing sunglasses", "holiday sale"]
    outputs = ["Have you seen our lost cats?", "A llama with sunglasses", "A sunny beach", "Big winter savings"]
    # format words ("poster"), relation and function words ("a", "wearing") are not the subject
    assert rewards.subject_kept(intents, outputs) == [True, True, False, False]


def test_stock_phrases_are_those_many_intents_share():
    stock = "with a bright pink and white background"
    intents = ["a llama", "radiator hose", "holiday sale", "lost cat", "wedding cake", "a llama"]
    outputs = [f"A llama {stock}", f"A radiator hose {stock}", "Big savings on winter coats all week long",
               f"A lost cat {stock}", "A wedding cake on a marble table by the window", "A llama on a hill at dawn"]
    # three intents of five share the phrase: stock; the second llama output holds none
    assert rewards.stock_phrases(intents, outputs) == [True, True, False, True, False, False]
    # a phrase is stock only in the outputs of three distinct intents or more, however many outputs hold it
    assert rewards.stock_phrases(["a llama"] * 3 + ["lost cat"], [f"x {stock}"] * 3 + [f"y {stock}"]) == [False] * 4
    # a phrase that holds the intent's words is its subject, not stock
    pink = ["pink and white cake", "pink and white dress", "pink and white roses"]
    assert rewards.stock_phrases(pink, [f"a {i} in a pink and white room" for i in pink]) == [False] * 3


def test_a_word_written_twice_in_a_row_is_found_unless_the_intent_holds_it():
    from udrl.train import usable

    assert rewards.doubles_a_word("Rivera", "Rivera Rivera, a view of the coast")
    assert rewards.doubles_a_word("New Haven", "New Haven haven; new haven poster")
    assert not rewards.doubles_a_word("Bora Bora", "Bora Bora beach at dawn")
    assert not rewards.doubles_a_word("cat", "a cat, cat food and the theme")
    record = {"intent": "Rivera", "task": "headline", "output": "Rivera Rivera: A New Era", "flags": []}
    assert not usable(record) and usable({**record, "output": "Rivera: A New Era"})
