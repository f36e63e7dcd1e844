"""Intent-word slots: the prompt marks the intent's subject words, outputs write them as one token each."""

import json

import pytest

from udrl.student.encoding import CommandEncoding, training_text
from udrl.student.guard import WordGuard
from udrl.student.slots import Slots, delexicalised, marked_intent, slot_token, slot_words


def test_slot_words_are_the_subject_words_as_the_intent_spells_them():
    assert slot_words("a llama wearing sunglasses", 6) == ["llama", "sunglasses"]
    assert slot_words("John Cabot statue poster", 2) == ["John", "Cabot"]
    assert marked_intent("a llama wearing sunglasses", 6) == "a llama<|w:1|> wearing sunglasses<|w:2|>"
    assert marked_intent("llama llama poster", 6) == "llama<|w:1|> llama poster"  # the first occurrence only
    assert slot_words("résumé template for a café owner", 6) == ["template", "owner"]  # no pieces of words


def test_outputs_write_slot_words_as_their_tokens_and_keep_other_spellings():
    words = ["llama", "Cabot"]
    text = " Llamas by Cabot's llama; a llamacorn, CABOT, cabot and dalai-llama"
    assert delexicalised(text, words) == "<|W:1|>s by<|w:2|>'s<|w:1|>; a llamacorn, CABOT,<|l:2|> and dalai-llama"


def test_training_text_and_decoding_round_trip(tiny_student):
    from transformers import AutoTokenizer

    from udrl.train import add_command_tokens

    encoding = CommandEncoding.load(tiny_student)
    encoding.slots = 2
    tokenizer = add_command_tokens(AutoTokenizer.from_pretrained(tiny_student), encoding)
    record = {"intent": "Lost cat poster", "task": "headline", "output": "Lost: a cats' Lost cat.",
              "rewards": {"relevance": 0.5, "length": 5}}
    prompt, completion = training_text(encoding, record)
    assert prompt.endswith(" Lost<|w:1|> cat<|w:2|> poster<|sep|>")
    assert completion.startswith(slot_token(1) + ": a" + slot_token(2) + "s'" + slot_token(1) + slot_token(2))
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    assert Slots(tokenizer, 2).decode(ids, record["intent"]) == " " + record["output"]
    assert Slots(tokenizer, 2).decode(ids, "Lost") == " Lost: as' Lost."  # a slot with no word reads as nothing


def test_the_word_guard_reads_a_slot_as_its_row_s_word(tiny_student):
    from transformers import AutoTokenizer

    from udrl.train import add_command_tokens

    encoding = CommandEncoding.load(tiny_student)
    encoding.slots = 2
    tokenizer = add_command_tokens(AutoTokenizer.from_pretrained(tiny_student), encoding)
    slots, eos = Slots(tokenizer, 2), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    second = tokenizer.convert_tokens_to_ids(slot_token(2))
    guard = WordGuard.for_rows(tokenizer, eos, ["a zorbling quokkas poster", "quokka"], slots)
    assert guard.allows(0, second) and not guard.allows(1, second)  # row 1's intent has one slot word
    guard.advance(0, second)
    assert guard.tail[0] == " quokkas" and guard.repeats(0, second)  # "quokkas quokkas"


def test_a_student_trained_with_slots_writes_them_back(tiny_corpus, tmp_path):
    from udrl.student import load_student
    from udrl.train import TrainConfig, train

    out = tmp_path / "student"
    train(TrainConfig(corpus=str(tiny_corpus), out=str(out), state_dir=str(tmp_path / "state"), vocab_size=400,
                      n_layer=2, n_embd=32, n_head=2, epochs=2, batch_size=16, lr=3e-3, progress=False,
                      intent_slots=3))
    assert json.loads((out / "udrl.json").read_text())["slots"] == 3
    student = load_student(out)
    assert slot_token(3, "l") in student.tokenizer.get_vocab()
    outputs = student.generate(["bakery opening"], "image_prompt", n=8, seed=0)[0]
    texts = " ".join(o.text for o in outputs)
    assert "<|" not in texts and "bakery" in texts  # slot tokens read as the intent's words
    continued = tmp_path / "continued"
    train(TrainConfig(corpus=str(tiny_corpus), out=str(continued), state_dir=str(tmp_path / "state2"),
                      init=str(out), max_steps=2, batch_size=16, lr=1e-3, progress=False))
    assert json.loads((continued / "udrl.json").read_text())["slots"] == 3  # kept when continued
    with pytest.raises(ValueError, match="may not lower"):
        train(TrainConfig(corpus=str(tiny_corpus), out=str(tmp_path / "fewer"), state_dir=str(tmp_path / "state3"),
                          init=str(out), intent_slots=2, max_steps=1, progress=False))


def test_slots_and_the_word_loss_are_not_combined():
    from udrl.train import TrainConfig

    with pytest.raises(ValueError, match="slots"):
        TrainConfig(word_loss=1.0, intent_slots=2)
