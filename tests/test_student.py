"""Training, checkpoint, command encoding and the fast decoder, on a tiny GPT-2 built in the test."""

import json

import pytest
import torch

from udrl.student.encoding import CommandEncoding, training_text
from udrl.student import CheckpointError, load_student

from conftest import make_records


def test_encoding_bins_are_monotone_and_saved(tmp_path):
    enc = CommandEncoding.fit(make_records(), bins=5)
    bins = [enc.relevance_bin("headline", v) for v in (0.0, 0.3, 0.5, 0.7, 1.0)]
    assert bins == sorted(bins) and bins[0] == 0 and bins[-1] == 4
    enc.save(tmp_path)
    assert CommandEncoding.load(tmp_path) == enc
    lo, hi = enc.relevance_range["headline"]
    assert enc.clamp_relevance("headline", 5.0) == hi and enc.clamp_relevance("headline", -5.0) == lo
    assert enc.clamp_relevance("headline", float("nan")) == enc.relevance_median["headline"]
    steps = enc.relevance_steps("headline")  # a sweep's commands: the range's ends, one per token between
    assert steps[0] == lo and steps[-1] == hi and steps == sorted(steps)
    assert [enc.relevance_bin("headline", v) for v in steps] == list(range(5))
    assert [enc.clamp_length(x) for x in (5, 33.4, 60)] == [5, 33, 60]
    with pytest.raises(ValueError, match="not supported"):
        enc.prefix("poem", 0.5, 10)
    record = make_records()[0]
    prompt, completion = training_text(enc, record)
    assert prompt.startswith("<|task:image_prompt|><|rel:") and completion.endswith("<|endoftext|>")
    # the intent follows a space, as its words do inside outputs; checkpoints of format 1 keep theirs
    assert prompt.endswith(f"|> {record['intent']}<|sep|>") and enc.version == 2
    old = CommandEncoding(**{**enc.__dict__, "version": 1})
    assert training_text(old, record)[0].endswith(f"|>{record['intent']}<|sep|>")


@pytest.mark.parametrize("edges, span, tokens", [
    ([0.2, 0.4, 0.6], [0.1, 0.6], [0, 1, 2, 3]),  # the top end on an edge: its bin starts there
    ([0.2, 0.4, 0.4, 0.6], [0.1, 0.7], [0, 1, 3, 4]),  # tied edges: bin 2 holds no value
    ([0.10002, 0.10003, 0.5], [0.05, 0.7], [0, 1, 2, 3]),  # a middle that rounding would move up a bin
    ([0.2, 0.4], [0.25, 0.35], [1]),  # the range in one bin: its top alone
])
def test_relevance_steps_send_each_reachable_token_once(edges, span, tokens):
    enc = CommandEncoding(len(edges) + 1, {"headline": edges}, {"headline": span})
    steps = enc.relevance_steps("headline")
    assert [enc.relevance_bin("headline", v) for v in steps] == tokens and steps[-1] == span[1]
    assert steps == sorted(steps) and all(span[0] <= v <= span[1] for v in steps)


def test_checkpoint_is_self_describing(tiny_student):
    names = {p.name for p in tiny_student.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "udrl.json",
            "README.md", "training.json"} <= names
    card = (tiny_student / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card
    training = json.loads((tiny_student / "training.json").read_text())
    assert training["history"][-1]["heldout_loss"] > 0


def test_generate_is_batched_and_deterministic(tiny_student):
    student = load_student(tiny_student)
    a = student.generate(["lost cat", "holiday sale"], "headline", relevance=0.7, length=8, n=3, seed=11)
    b = student.generate(["lost cat", "holiday sale"], "headline", relevance=0.7, length=8, n=3, seed=11)
    assert [len(g) for g in a] == [3, 3]
    assert [[o.text for o in g] for g in a] == [[o.text for o in g] for g in b]
    # out-of-range commands are clamped, not rejected
    out = student.generate(["lost cat"], "headline", relevance=9.0, length=500, n=1, seed=0)[0][0]
    assert out.command["length"] == 60 and out.command["relevance"] == student.encoding.relevance_range["headline"][1]


def test_fast_decoder_matches_gpt2_logits_over_several_steps(tiny_student):
    student = load_student(tiny_student)
    prompts = [student.prompt_ids("lost cat", "headline", 0.6, 8), student.prompt_ids("ski trip", "image_prompt",
                                                                                        0.3, 20)]
    fast = student.fast
    for ids in prompts:
        ids = list(ids)
        cache = fast.new_cache(1, len(ids) + 6)
        mask = torch.ones(1, len(ids) + 6, dtype=torch.bool)
        logits = fast.forward(torch.tensor([ids]), torch.arange(len(ids))[None], cache, 0, mask)
        for step in range(6):
            with torch.no_grad():
                ref = student.model(torch.tensor([ids])).logits[:, -1]
            assert torch.allclose(logits, ref, atol=1e-4), (step, (logits - ref).abs().max())
            token = int(ref.argmax())
            ids.append(token)
            logits = fast.forward(torch.tensor([[token]]), torch.tensor([[len(ids) - 1]]), cache, len(ids) - 1,
                                  mask)


def test_fast_decoder_greedy_matches_transformers(tiny_student):
    student = load_student(tiny_student)
    ids = student.prompt_ids("bakery opening", "search_queries", 0.5, 10)
    with torch.no_grad():
        ref = student.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     do_sample=False, max_new_tokens=12, eos_token_id=student.eos_id,
                                     pad_token_id=student.pad_id)
    expected = [t for t in ref[0, len(ids):].tolist() if t not in (student.eos_id, student.pad_id)]
    assert student.fast.generate([ids], 12, student.eos_id, student.pad_id, temperature=0) == [expected]


@pytest.mark.parametrize("rounds", [8, 0])
@pytest.mark.parametrize("top_p", [0.5, 0.9, 1.0])
def test_sampler_draws_from_the_transformers_distribution(top_p, rounds, monkeypatch):
    """Empirical token frequencies equal the softmax of transformers' temperature + top-p warped logits,
    drawing by rejection (rounds 8) and by the sorted fallback alone (rounds 0)."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    from udrl.student import decoding

    monkeypatch.setattr(decoding, "REJECTION_ROUNDS", rounds)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 300, generator=gen) * torch.tensor([[8.0], [3.0], [0.3]])  # sharp .. flat
    expected = TemperatureLogitsWarper(0.8)(None, logits.clone())
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    expected = expected.softmax(-1)
    draws = 20_000
    tokens = decoding._sample(logits.repeat(draws, 1), 0.8, top_p, torch.Generator().manual_seed(1)).view(draws, 3)
    for row in range(3):
        freq = torch.bincount(tokens[:, row], minlength=300).double() / draws
        assert (freq[expected[row] == 0] == 0).all(), "drew a token the nucleus drops"
        assert (freq - expected[row]).abs().max() < 0.02, (row, (freq - expected[row]).abs().max())
    again = decoding._sample(logits.repeat(draws, 1), 0.8, top_p, torch.Generator().manual_seed(1)).view(draws, 3)
    assert torch.equal(tokens, again)


@pytest.mark.parametrize("sharpness", [0.5, 3.0, 12.0])
def test_nucleus_rule_equals_transformers_warper(sharpness):
    """A token is kept when the mass above it is below top_p: exactly what transformers' warper keeps."""
    from transformers.generation.logits_process import TopPLogitsWarper

    from udrl.student.decoding import mass_above

    gen = torch.Generator().manual_seed(int(sharpness * 10))
    logits = torch.randn(4, 1024, generator=gen) * sharpness
    every_token = torch.arange(1024).expand(4, -1)
    above = mass_above(logits.softmax(-1), every_token)
    for top_p in (0.5, 0.9, 0.95):
        expected = ~TopPLogitsWarper(top_p)(None, logits.clone()).isinf()
        assert torch.equal(above < top_p, expected)


def test_llama_cpp_path_matches_pytorch(tiny_student):
    student = load_student(tiny_student)
    assert student.single is not None, "the GGUF export should load in llama.cpp"
    ids = student.prompt_ids("lost cat", "image_prompt", 0.6, 12)
    student.single.prefill([ids])
    with torch.no_grad():
        ref = student.model(torch.tensor([ids])).logits[:, -1]
    assert torch.allclose(student.single.last_logits(), ref, atol=1e-4)
    greedy = [student.single.generate([ids], 15, student.eos_id, student.pad_id, temperature=0)[0]]
    assert greedy == student.fast.generate([ids], 15, student.eos_id, student.pad_id, temperature=0)
    penalised = student.single.generate([ids], 15, student.eos_id, student.pad_id, temperature=0, repetition_penalty=2)
    assert penalised == student.fast.generate([ids], 15, student.eos_id, student.pad_id, temperature=0,
                                              repetition_penalty=2) != [greedy[0]]
    sampled = [student.single.generate([ids], 15, student.eos_id, student.pad_id, temperature=0.8, top_p=0.9,
                                       generator=torch.Generator().manual_seed(3))[0]]
    assert sampled == student.fast.generate([ids], 15, student.eos_id, student.pad_id, temperature=0.8, top_p=0.9,
                                            generator=torch.Generator().manual_seed(3))


def test_banned_tokens_are_never_drawn_on_either_path(tiny_student, monkeypatch):
    """A task's foreign tokens (a headline's ";") are never drawn, batched or on llama.cpp, and the two paths
    still agree."""
    student = load_student(tiny_student)
    ids = student.prompt_ids("lost cat", "headline", 0.6, 12)
    greedy = student.fast.generate([ids], 15, student.eos_id, student.pad_id, temperature=0)[0]
    banned = sorted(set(greedy) - {student.eos_id})[:2]
    assert banned, "the tiny student should write something"
    fast = student.fast.generate([ids], 15, student.eos_id, student.pad_id, temperature=0, banned=banned)[0]
    single = student.single.generate([ids], 15, student.eos_id, student.pad_id, temperature=0, banned=banned)[0]
    assert fast == single != greedy and not set(fast) & set(banned)
    semicolons = student.foreign_tokens("headline")
    assert semicolons and all(";" in student.tokenizer.decode([i]) for i in semicolons)
    assert student.foreign_tokens("search_queries") == [] == student.foreign_tokens("image_prompt")
    sent = []
    for decoder in (student.fast, student.single):  # generate sends the task's foreign tokens to either path
        monkeypatch.setattr(decoder, "generate", lambda *a, _f=decoder.generate, **k: sent.append(k["banned"])
                            or _f(*a, **k))
    student.generate(["lost cat"], "headline")
    student.generate(["lost cat", "jazz night"], "headline", n=2)
    student.generate(["lost cat"], "image_prompt")
    assert sent == [semicolons, semicolons, []]


def test_batched_left_padding_matches_single(tiny_student):
    student = load_student(tiny_student)
    short = student.prompt_ids("ski trip", "headline", 0.5, 8)
    long = student.prompt_ids("a much longer intent about a pizza party", "headline", 0.5, 8)
    fast = student.fast
    single = [fast.generate([p], 10, student.eos_id, student.pad_id, temperature=0)[0] for p in (short, long)]
    assert fast.generate([short, long], 10, student.eos_id, student.pad_id, temperature=0) == single


def _random_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                      initializer_range=0.4)).eval()


def _random_gpt2(model=None):
    """A FastGPT2 over a random GPT-2 with large weights (varied, context-dependent greedy outputs) and
    eight random prompts of 3 to 14 tokens."""
    from udrl.student.decoding import FastGPT2

    model = model or _random_model()
    gen = torch.Generator().manual_seed(1)
    return FastGPT2(model), [torch.randint(1, 40, (n,), generator=gen).tolist() for n in (3, 5, 6, 8, 9, 11, 12, 14)]


def test_batch_drops_finished_rows_without_changing_the_others():
    """Rows that end early leave the batch (cache compaction); the rest decode exactly as alone."""
    from collections import Counter

    fast, prompts = _random_gpt2()
    free = [fast.generate([p], 30, eos_id=0, pad_id=0, temperature=0)[0] for p in prompts]
    # stop on a token the outputs first reach at different steps, so rows finish one after another
    firsts = Counter()
    for out in free:
        firsts.update({t: 1 for t in set(out)})
    stop = max(firsts, key=lambda t: len({out.index(t) for out in free if t in out}))
    single = [fast.generate([p], 30, stop, 0, temperature=0)[0] for p in prompts]
    assert len({len(s) for s in single}) >= 3, "rows should finish at different steps"
    assert fast.generate(prompts, 30, stop, 0, temperature=0) == single


def test_repetition_penalty_equals_transformers_over_the_output():
    """The penalty is transformers' RepetitionPenaltyLogitsProcessor over the output's tokens (the prompt is
    not counted): greedy decoding equals ``generate`` with that processor, alone, batched with rows leaving
    the batch and in shards; it changes what is decoded."""
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    model = _random_model()
    fast, prompts = _random_gpt2(model)
    expected = []
    for p in prompts:
        processor = RepetitionPenaltyLogitsProcessor(1.8, prompt_ignore_length=len(p))
        with torch.no_grad():
            ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                 do_sample=False, max_new_tokens=20, eos_token_id=0, pad_token_id=0,
                                 logits_processor=LogitsProcessorList([processor]))
        out = ref[0, len(p):].tolist()
        expected.append(out[: out.index(0)] if 0 in out else out)
    single = [fast.generate([p], 20, 0, 0, temperature=0, repetition_penalty=1.8)[0] for p in prompts]
    assert single == expected
    assert single != [fast.generate([p], 20, 0, 0, temperature=0)[0] for p in prompts]
    assert len({len(out) for out in expected}) >= 3, "rows should finish at different steps"
    assert fast.generate(prompts, 20, 0, 0, temperature=0, repetition_penalty=1.8) == expected
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fast.SHARD_ROWS = 2
        assert fast.generate(prompts, 20, 0, 0, temperature=0, repetition_penalty=1.8) == expected
    finally:
        torch.set_num_threads(threads)


def test_large_batches_split_into_one_shard_per_thread():
    """Sharded decoding (one single-threaded shard per torch thread) returns each prompt's own output, in
    order, guided or not; each shard samples from a generator seeded by the caller's."""
    fast, prompts = _random_gpt2()
    references = [[(t + 7) % 40 for t in p] for p in prompts]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for refs, scale in ((None, 1.0), (references, 2.5)):
            fast.SHARD_ROWS = 1000
            whole = fast.generate(prompts, 12, 0, 0, temperature=0, references=refs, guidance_scale=scale)
            fast.SHARD_ROWS = 2
            assert fast.generate(prompts, 12, 0, 0, temperature=0, references=refs, guidance_scale=scale) == whole
            assert torch.get_num_threads() == 2, "the caller's thread count comes back"
            sampled = fast.generate(prompts, 12, 0, 0, temperature=1.0, top_p=0.9, references=refs,
                                    guidance_scale=scale, generator=torch.Generator().manual_seed(5))
            seeds = torch.randint(2**62, (2,), generator=torch.Generator().manual_seed(5)).tolist()
            by_shard = [fast._generate(prompts[i : i + 4], 12, 0, 0, 1.0, 0.9, torch.Generator().manual_seed(s),
                                       refs[i : i + 4] if refs else None, scale) for i, s in zip((0, 4), seeds)]
            assert sampled == by_shard[0] + by_shard[1]
    finally:
        torch.set_num_threads(threads)


def test_init_from_pretrained_gpt2_keeps_its_tokenizer(tmp_path, tiny_corpus):
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from udrl.train import TrainConfig, build_tokenizer, train

    base = tmp_path / "tiny-gpt2"
    enc = CommandEncoding.fit(make_records(), bins=4)
    tok = build_tokenizer([r["output"] for r in make_records()], enc, 500)
    # a "pretrained" GPT-2 of its own: plain tokenizer without our control tokens
    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="<|endoftext|>")
    GPT2LMHeadModel(GPT2Config(vocab_size=120, n_positions=128, n_embd=32, n_layer=1, n_head=2)).save_pretrained(base)
    plain.save_pretrained(base)
    out = tmp_path / "student"
    train(TrainConfig(corpus=str(tiny_corpus), out=str(out), state_dir=str(tmp_path / "state"), init=str(base),
                      epochs=1, batch_size=16, progress=False))
    student = load_student(out)
    assert student.model.get_input_embeddings().weight.shape[0] == len(student.tokenizer)
    assert "<|rel:0|>" in student.tokenizer.get_vocab()
    assert student.generate(["lost cat"], "headline", n=1, seed=0)[0][0].command["task"] == "headline"


def test_continuing_a_student_keeps_its_commands_and_records_its_stages(tmp_path, tiny_student):
    from udrl.train import TrainConfig, train

    shifted = tmp_path / "shifted"  # relevance halved: a fresh fit would move every bin edge
    shifted.mkdir()
    with (shifted / "part-00000.jsonl").open("w") as fh:
        for r in make_records(seed=1):
            r["rewards"]["relevance"] = round(r["rewards"]["relevance"] / 2, 4)
            fh.write(json.dumps(r) + "\n")
    assert CommandEncoding.fit(make_records(seed=1)).relevance_edges != CommandEncoding.fit(
        [json.loads(line) for line in (shifted / "part-00000.jsonl").open()]).relevance_edges
    out = tmp_path / "continued"
    info = train(TrainConfig(corpus=str(shifted), out=str(out), state_dir=str(tmp_path / "state"),
                             init=str(tiny_student), epochs=1, batch_size=16, lr=1e-3, progress=False))
    assert CommandEncoding.load(out) == CommandEncoding.load(tiny_student)
    assert info["architecture"] == {"n_layer": 2, "n_embd": 32, "n_head": 2,
                                    "vocab_size": load_student(tiny_student).model.config.vocab_size}
    earlier = json.loads((tiny_student / "training.json").read_text())
    assert info["continued_from"]["history"] == earlier["history"]
    card = (out / "README.md").read_text()
    assert "continued from" in card and "2 layers, 32 wide" in card


def test_resume_continues_from_saved_epoch(tmp_path, tiny_corpus):
    from udrl.train import TrainConfig, train

    cfg = TrainConfig(corpus=str(tiny_corpus), out=str(tmp_path / "s"), state_dir=str(tmp_path / "state"),
                      vocab_size=400, n_layer=1, n_embd=32, n_head=2, epochs=1, batch_size=16, progress=False)
    first = train(cfg)
    cfg.epochs, cfg.resume = 2, True
    second = train(cfg)
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]


def test_missing_or_corrupt_checkpoint_says_how_to_fix(tmp_path, tiny_student):
    with pytest.raises(CheckpointError, match="python -m udrl train"):
        load_student(tmp_path / "nothing")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_student.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_student(broken)
