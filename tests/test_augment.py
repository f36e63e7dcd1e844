"""Subject-swap augmentation: swaps are consistent, formats stay, rewards are re-scored by the real model."""

from __future__ import annotations

import json
import random

import pytest

from udrl.augment import augment_corpus, subject_words, swap_subject, swap_words, word_pool
from udrl.corpus import load_corpus, validate_record


def test_subject_words_skip_formats_modifiers_and_function_words():
    assert subject_words("lost cat poster for a luxury brand") == ["lost", "cat"]
    assert subject_words("bakery grand opening instagram post") == ["bakery", "grand", "opening"]
    assert subject_words("poster with a minimalist look") == []


def test_swap_words_is_whole_word_and_keeps_case():
    text = "Lost CAT? Find the cat's owner; catalog of cats. Cat lovers"
    assert swap_words(text, {"cat": "dog"}) == "Lost DOG? Find the dog's owner; catalog of cats. Dog lovers"
    assert swap_words("unchanged", {}) == "unchanged"


def test_swap_subject_changes_intent_and_output_the_same_way():
    record = {"id": "image_prompt-1-0", "intent": "lost cat poster", "task": "image_prompt",
              "output": "A worried cat on a lost pet poster, soft light", "split": "train",
              "teacher": {}, "decoding": {}, "seed": 0, "rewards": {"relevance": 0.8, "length": 9,
                                                                     "novelty": 0.7}, "latency_ms": 1.0}
    variant = swap_subject(record, ["zebra", "violin"], random.Random(0), copy=0, rate=1.0)
    assert variant["intent"].endswith(" poster") and "cat" not in variant["intent"]
    new = variant["intent"].split()[:2]
    assert all(w in {"zebra", "violin"} for w in new)
    assert f"worried {new[1]} on a {new[0]} pet poster" in variant["output"]
    assert variant["augmented_from"] == record["id"] and variant["rewards"] is None
    assert record["intent"] == "lost cat poster"  # the source record is untouched
    assert swap_subject({**record, "intent": "poster"}, ["zebra"], random.Random(0), 0) is None


def test_word_pool_is_general_english_without_format_words():
    pool = word_pool()
    assert len(pool) > 10_000
    assert "poster" not in pool and "flyer" not in pool
    assert all(w.isalpha() and w.islower() for w in pool[:500])


def test_augment_corpus_rescores_with_the_real_reward_model(tmp_path, tiny_corpus):
    out = tmp_path / "augmented"
    stats = augment_corpus(tiny_corpus, out, copies=2, seed=3)
    train = load_corpus(tiny_corpus, split="train")
    assert stats["source_records"] == len(train) and stats["written"] == 2 * len(train)
    variants = load_corpus(out)
    assert len(variants) == stats["written"]
    sources = {r["id"]: r for r in train}
    for v in variants:
        validate_record(v)
        source = sources[v["augmented_from"]]
        assert v["split"] == "train" and v["intent"] != source["intent"]
        assert v["rewards"]["length"] == len(v["output"].split())
    # a copy of the new subject must score as more relevant than an output that ignores it
    copied = [v for v in variants if v["intent"].lower() in v["output"].lower()]
    ignored = [v for v in variants if not set(v["intent"].lower().split()) & set(v["output"].lower().split())]
    assert copied and ignored
    mean = lambda rs: sum(r["rewards"]["relevance"] for r in rs) / len(rs)  # noqa: E731
    assert mean(copied) > mean(ignored) + 0.1
    # deterministic for a seed, and never mixed into an existing folder
    again = tmp_path / "again"
    augment_corpus(tiny_corpus, again, copies=2, seed=3)
    assert [json.dumps(r, sort_keys=True) for r in load_corpus(again)] == \
        [json.dumps(r, sort_keys=True) for r in variants]
    # fewer copies with the same seed are the first copies of a larger run
    augment_corpus(tiny_corpus, tmp_path / "one", copies=1, seed=3)
    fields = lambda r: (r["id"], r["intent"], r["output"])  # noqa: E731
    assert [fields(r) for r in load_corpus(tmp_path / "one")] == [fields(r) for r in variants[: len(train)]]
    with pytest.raises(FileExistsError, match="already holds records"):
        augment_corpus(tiny_corpus, out)


def test_data_card_describes_the_augmented_records(tmp_path, tiny_corpus):
    from udrl.__main__ import main
    from udrl.cards import write_data_card

    augment_corpus(tiny_corpus, tmp_path / "aug", copies=1)
    card = tmp_path / "README.md"
    stats = write_data_card(tiny_corpus, card, augmented=tmp_path / "aug")
    text = card.read_text()
    assert "## Subject-swapped training records" in text
    assert f"left out of training (`udrl.tasks.echoes_example`): {stats['echoes'] or 'none'}" in text
    n_train = sum(v for k, v in stats["counts"].items() if k.endswith("/train"))
    assert f"{n_train} records made by `python -m udrl augment`" in text
    assert main(["augment", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "x"), "--copies", "0"]) == 2
