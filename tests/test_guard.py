"""The word guard: tokens that would leave real words are redrawn; the model's own draws are kept otherwise."""

import torch

from udrl.lexicon import is_english
from udrl.student.guard import WordGuard, starts_word

# token ids: 0 end, then pieces a byte-level BPE would have
PIECES = ["", " ca", "t", "xq", " llam", "a", ".", " dog", "s", " zzv", " pulchritudinous"]


def test_a_token_is_allowed_only_if_it_keeps_to_real_words():
    guard = WordGuard(PIECES, eos_id=0, intents=["llama poster"])
    assert starts_word("ca") and not starts_word("caxq") and starts_word("llam", frozenset({"llama"}))
    assert guard.allows(0, 1) and not guard.allows(0, 9)  # " ca" begins words, " zzv" none
    # in the word lists the non-word rate counts with, but too rare for a reader to know: refused
    assert is_english("pulchritudinous") and not guard.allows(0, 10) and not guard.allows(0, 10, last=True)
    contraction = WordGuard(["", " shouldn", "'t", " go"], eos_id=0, intents=["cat"])
    assert contraction.allows(0, 1)
    contraction.advance(0, 1)
    assert contraction.allows(0, 2)  # "shouldn't": the parts of a common contraction are words
    guard.advance(0, 1)
    assert guard.allows(0, 2) and not guard.allows(0, 3)  # "cat" is a word, "caxq" begins none
    guard.advance(0, 2)
    assert guard.allows(0, 6) and guard.allows(0, 0)  # "cat." and the end close a whole word
    guard.advance(0, 6)
    assert guard.open == [""]
    guard.advance(0, 4)  # " llam": the beginning of the intent's own word, in no word list
    assert not guard.allows(0, 0) and not guard.allows(0, 6)  # the output may not stop or break at "llam"
    assert guard.allows(0, 5)  # "llama" is the intent's
    guard.advance(0, 5)
    assert not guard.allows(0, 4, last=True) and guard.allows(0, 7, last=True)  # the budget ends on a whole word
    part = WordGuard(PIECES, 0, ["dog", "llama", "cat"]).slice(1, 3)
    assert [sorted(own) for own in part.own] == [["llama"], ["cat"]] and part.open == ["", ""]


def test_enforce_redraws_a_refused_token_and_keeps_an_allowed_one():
    guard = WordGuard(PIECES, eos_id=0, intents=["cat", "cat"])
    scores = torch.full((2, len(PIECES)), -5.0)
    scores[0, 9], scores[0, 7] = 5.0, 4.0  # row 0's draw " zzv" is refused: its next likeliest, " dog", stands
    scores[1, 1] = 5.0
    draws = iter([torch.tensor([9])] * 20)  # a sampler that keeps drawing the refused token
    token = guard.enforce(scores, torch.tensor([9, 1]), torch.tensor([0, 1]), torch.tensor([True, True]),
                          lambda s: next(draws))
    assert token.tolist() == [7, 1] and guard.open == ["dog", "ca"]
    finished = guard.enforce(scores, torch.tensor([9, 9]), torch.tensor([0, 1]), torch.tensor([False, False]),
                             lambda s: next(draws))
    assert finished.tolist() == [9, 9]  # rows already ended are left alone


def test_a_word_may_not_follow_itself():
    pieces = ["", " tour", " tours", ";", " cat", "s", " ca", "t"]
    guard = WordGuard(pieces, eos_id=0, intents=["tour"])
    guard.advance(0, 1)
    assert guard.repeats(0, 1) and not guard.repeats(0, 2) and not guard.repeats(0, 0)  # "tour tour", not "tours"
    scores = torch.zeros(1, len(pieces))
    scores[0, 1], scores[0, 2] = 5.0, 4.0
    draws = iter([torch.tensor([1])] * 20)  # a sampler that keeps drawing " tour": the likeliest other stands
    assert guard.enforce(scores, torch.tensor([1]), torch.tensor([0]), torch.tensor([True]),
                         lambda s: next(draws)).tolist() == [2]
    for token in (3, 1, 4):  # "tour; tour": a break other than a space sets them apart
        assert not guard.repeats(0, token)
        guard.advance(0, token)
    assert guard.repeats(0, 4) and not guard.repeats(0, 6)  # " cat" is the word again; " ca" only begins it
    guard.advance(0, 6)
    assert guard.repeats(0, 7) and not guard.repeats(0, 5)  # "cat ca" + "t" spells it whole, + "s" does not


def test_an_output_may_not_end_on_a_word_that_leaves_its_phrase_open():
    from udrl.lexicon import ends_phrase

    assert not any(map(ends_phrase, ["for", "an", "their", "its", "unique", "old-fashioned", "b"]))
    assert all(map(ends_phrase, ["sunrise", "you", "it", "I", "blue", "light", "design"]))
    pieces = ["", " cake", " for", " an", " unique", ".", " B", " blue"]
    guard = WordGuard(pieces, eos_id=0, intents=["plan B", "cake"])
    assert not guard.dangles(0, 0)  # nothing written: the end is the model's to draw
    for token, open_end in ((1, False), (2, True), (3, True), (4, True), (5, False), (6, False)):
        guard.advance(0, token)
        assert guard.dangles(0, 0) is open_end and not guard.dangles(0, 7), pieces[token]
    other = WordGuard(pieces, eos_id=0, intents=["cake"])  # "B" is not this intent's word: a letter left over
    other.advance(0, 6)
    assert other.dangles(0, 0)
    scores = torch.zeros(1, len(pieces))
    scores[0, 0], scores[0, 7] = 5.0, 4.0
    for token in (1, 2, 3):
        other.advance(0, token)  # "... cake for an"
    draws = iter([torch.tensor([0])] * 20)  # a sampler that keeps drawing the end: the likeliest word that fits stands
    assert other.enforce(scores, torch.tensor([0]), torch.tensor([0]), torch.tensor([True]),
                         lambda s: next(draws)).tolist() == [7]


def test_guarded_student_writes_only_real_words_and_stays_deterministic(tiny_student):
    from udrl import rewards
    from udrl.lexicon import is_common, words
    from udrl.student import load_student

    student = load_student(tiny_student)
    intents = ["lost cat", "a llama wearing sunglasses", "jazz night", "vintage typewriter repair"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # 16 rows: one shard per thread, each with its rows' guard
    try:
        student.fast.SHARD_ROWS = 4
        free = student.generate(intents, "image_prompt", n=4, seed=3, max_new_tokens=24)
        guarded = student.generate(intents, "image_prompt", n=4, seed=3, max_new_tokens=24, word_guard=True)
        again = student.generate(intents, "image_prompt", n=4, seed=3, max_new_tokens=24, word_guard=True)
    finally:
        torch.set_num_threads(threads)
        student.fast.SHARD_ROWS = type(student.fast).SHARD_ROWS
    flat = [i for i in intents for _ in range(4)]
    texts = [o.text for g in guarded for o in g]
    assert [o.text for g in again for o in g] == texts
    assert max(rewards.non_word_rate(flat, [o.text for g in free for o in g])) > 0  # the tiny model invents words
    assert all(o.sampling["word_guard"] for g in guarded for o in g)
    # every word is real, but for an output the token budget cut inside a word its last one begins a real word
    for intent, output in zip(flat, texts):
        *whole, last = words(output) or [""]
        assert rewards.non_word_rate([intent], [" ".join(whole)]) == [0.0]
        assert all(is_common(w) or w in words(intent) for w in whole)
        assert not last or is_common(last) or starts_word(last, frozenset(words(intent)))
    assert sum(rewards.non_word_rate(flat, texts)) < sum(rewards.non_word_rate(flat, [o.text for g in free for o in g]))


def test_the_guard_carries_a_begun_subject_word_through_once():
    from udrl.student.guard import CARRY_BIAS

    pieces = ["", " l", "lam", "av", "a", " New", "ark", " city"]
    guard = WordGuard(pieces, eos_id=0, intents=["a llama in Newark", "jazz night"])
    rows, alive = torch.tensor([0, 1]), torch.tensor([True, True])

    def bias():
        return guard.steer(torch.zeros(2, len(pieces)), rows, alive)

    assert not bias().any()  # no word begun yet
    for row in (0, 1):  # " l" in both rows
        guard.advance(row, 1)
    boosted = bias()
    assert boosted[0].tolist() == [0, 0, CARRY_BIAS, 0, 0, 0, 0, 0]  # "lam" goes on spelling "llama", "av" not
    assert not boosted[1].any()  # "jazz night" names no word beginning with "l"
    guard.advance(0, 2)
    assert bias()[0, 4] == CARRY_BIAS  # "llam" + "a"
    for token in (4, 7, 5):  # "llama city New": "llama" is written
        guard.advance(0, token)
    assert bias()[0, 6] == CARRY_BIAS  # "New" + "ark" spells the intent's "Newark"
    guard.advance(0, 6)
    guard.advance(0, 1)
    assert not bias()[0].any()  # " l" again after "llama" was written: no push to write it twice
    part = guard.slice(1, 2)
    assert part.carry == guard.carry[1:] and part.written == guard.written[1:]


def test_one_guarded_prompt_decodes_on_the_gguf_path_in_real_words(tiny_student):
    import re

    from udrl.lexicon import is_common
    from udrl.student import load_student

    student = load_student(tiny_student)
    assert student.single is not None  # the checkpoint's GGUF: a single prompt is decoded by llama.cpp
    calls = []
    original = student.single.generate

    def spy(*args, **kwargs):
        calls.append("guard" in kwargs)
        return original(*args, **kwargs)

    student.single.generate = spy
    intent = "a llama wearing sunglasses"
    for seed in range(4):
        [[out]] = student.generate([intent], "image_prompt", seed=seed, max_new_tokens=24, word_guard=True)
        *whole, last = re.split("[^a-z]+", out.text.lower())  # words as the guard reads them
        assert all(not w or is_common(w) or w in intent.split() for w in whole), out.text
    assert calls == [True] * 4


def test_the_word_rule_allows_every_token_the_guard_allows_and_no_other():
    from udrl.student.guard import WordRule

    pieces = PIECES + [" llama", "'s", "m", " c", "at", "dog", None]
    rule = WordRule(pieces, eos_id=0)
    for intent in ("llama poster", "zzv cat"):
        guard = WordGuard(pieces, eos_id=0, intents=[intent])
        states = ["", "ca", "cat", "caxq", "llam", "llama", "zzv", "dog", "c"]
        mask = rule.allowed(states, guard.own[0])
        for i, state in enumerate(states):
            guard.open[0] = state
            assert mask[i].tolist() == [guard.allows(0, t) for t in range(len(pieces))], (intent, state)
    assert rule.states([1, 2, 6, 4, 5, 0]) == ["", "ca", "cat", "", "llam", "llama"]


def test_the_word_loss_adds_minus_the_log_of_the_mass_on_allowed_tokens():
    import math
    from types import SimpleNamespace

    from udrl.train import word_loss

    class Uniform(torch.nn.Module):  # the same score for each of 4 tokens, so that the mass is a count
        def forward(self, input_ids, attention_mask, labels):
            return SimpleNamespace(loss=torch.tensor(1.0), logits=torch.zeros(*input_ids.shape, 4))

    batch = {"input_ids": torch.zeros(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4),
             "labels": torch.tensor([[-100, 2, 3, 1]]), "word_positions": torch.tensor([[False, True, True, True]]),
             "word_allowed": torch.tensor([[True, True, False, False], [True, True, True, True],
                                           [False, False, False, False]])}
    # the first position has half the mass allowed (log 2), the second all of it (0): a mean of log 2 / 2;
    # at the third no token is allowed (a word nothing can make real), and it is left out
    assert math.isclose(float(word_loss(Uniform(), batch, weight=2.0)), 1.0 + math.log(2), rel_tol=1e-5)


def test_training_with_the_word_loss_moves_mass_onto_real_words(tmp_path, tiny_student, tiny_corpus):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from udrl.corpus import load_corpus
    from udrl.student.encoding import EOS, PAD, CommandEncoding
    from udrl.student.guard import WordRule
    from udrl.train import TrainConfig, _token_loss, collate, encode_records, train, word_loss

    tokenizer = AutoTokenizer.from_pretrained(tiny_student)
    rule = WordRule.for_tokenizer(tokenizer, tokenizer.convert_tokens_to_ids(EOS))
    examples = encode_records(load_corpus(str(tiny_corpus)), CommandEncoding.load(tiny_student), tokenizer, 128,
                              rule=rule)
    batch = collate(tokenizer.convert_tokens_to_ids(PAD), rule)(examples)

    def off_words(checkpoint) -> float:
        model = GPT2LMHeadModel.from_pretrained(checkpoint).eval()
        with torch.no_grad():
            return float(word_loss(model, batch, 1.0) - _token_loss(model, batch))

    trained = {}
    for weight in (0.0, 10.0):
        out = tmp_path / f"w{weight}"
        info = train(TrainConfig(corpus=str(tiny_corpus), out=str(out), state_dir=str(tmp_path / f"state{weight}"),
                                 init=str(tiny_student), max_steps=10, batch_size=16, lr=3e-3, word_loss=weight,
                                 progress=False))
        assert info["config"]["word_loss"] == weight
        trained[weight] = off_words(out)
    assert trained[10.0] < 0.9 * trained[0.0]  # measured: 0.71 against 0.87


def test_a_sample_of_the_models_own_teaches_through_the_word_loss_alone(tiny_student):
    from transformers import AutoTokenizer

    from conftest import make_records
    from udrl.student.encoding import EOS, PAD, CommandEncoding
    from udrl.student.guard import WordRule
    from udrl.train import collate, encode_records

    tokenizer = AutoTokenizer.from_pretrained(tiny_student)
    rule = WordRule.for_tokenizer(tokenizer, tokenizer.convert_tokens_to_ids(EOS))
    record = {**make_records()[0], "output": "lost cat posterqzv in bright colors"}
    examples = encode_records([record, {**record, "word_only": True}], CommandEncoding.load(tiny_student),
                              tokenizer, 128, rule=rule)
    batch = collate(tokenizer.convert_tokens_to_ids(PAD), rule)(examples)
    assert (batch["labels"][1] == -100).all() and (batch["labels"][0] != -100).sum() > 5  # no token loss on it
    written = batch["input_ids"][batch["word_positions"]]
    half = len(written) // 2
    assert torch.equal(written[:half], written[half:])
    own = batch["word_allowed"][torch.arange(len(written)), written]
    assert own[:half].all()  # the corpus's own tokens stay learnable, "posterqzv" included
    assert not own[half:].all()  # in the model's sample, the pieces of "posterqzv" are taken out
