"""Train the UDRL student with Accelerate: hindsight-relabelled teacher samples -> small GPT-2.

Every corpus record becomes ``<task><rel_bin><len> intent <sep> output <eos>`` with the reward the sample
*achieved* as its command, so low-reward samples teach what a low command means. The loss covers the
output tokens only. Runs unchanged on a CPU or, with ``accelerate launch``, on several GPUs.

``distil_guidance`` continues a tuned student instead: the loss is the KL divergence from what its guided
sampling draws to the model's own single pass (guidance distillation, Meng et al., 2023), so the result
samples close to that way at half the decoding cost.

``word_loss`` adds the word guard's rule (:class:`udrl.student.guard.WordRule`) as a loss: at each output
position, minus the log of the probability the model gives the tokens the guard would allow there. Sampled
text shows the model one allowed token a position; this shows it every token the guard would take out, where
the model's own outputs go wrong (a rare word finished with a piece that spells nothing). ``word_samples``
adds outputs of the student's own that hold invented words: at their positions the word loss alone applies,
with the token the model wrote there not allowed, so it learns on the begun words where it goes wrong.

``phrase_cap`` limits how many of the student's own rollouts may share a 4-word phrase beyond the subject:
rounds of iterated UDRL otherwise teach the student its own stock scenery again ("bright pink and white").
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from udrl import invocation
from udrl.config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, TrainConfig
from udrl.student.encoding import ENCODING_FILE, EOS, PAD, CommandEncoding, prompt_text, training_text
from udrl.corpus import load_corpus
from udrl.rewards import PhraseCap, doubles_a_word
from udrl.tasks import echoes_example, get_task
from udrl.student.decoding import guided_scores
from udrl.student.guard import WordRule, own_words
from udrl.student.sampling import Sampling, load_sampling, save_sampling


def usable(record: dict) -> bool:
    """Records the student learns from: every reward level, but no refusals, empty answers, echoes of the
    teacher's few-shot examples (:func:`udrl.tasks.echoes_example`), outputs that write a word twice in a
    row (:func:`udrl.rewards.doubles_a_word`: mostly an earlier student's rollouts, "New Haven Haven") or
    outputs in another task's form (:meth:`udrl.tasks.Task.takes_foreign_form`: an earlier student's
    headlines written as search queries, "Origami workshop; origami project!")."""
    return not ({"refusal", "empty"} & set(record.get("flags", []))
                or echoes_example(record["task"], record["intent"], record["output"])
                or doubles_a_word(record["intent"], record["output"])
                or get_task(record["task"]).takes_foreign_form(record["output"]))


def cap_rollout_phrases(records: list[dict], cap: int, seed: int) -> list[dict]:
    """``records`` with the student's own rollouts (``source: "student"``) kept only while each 4-word phrase
    without an intent word is in fewer than ``cap`` kept rollouts of their task (:class:`udrl.rewards.PhraseCap`),
    drawn in an order shuffled by ``seed`` so that no round comes first; other records all stay. ``cap`` 0
    keeps every record."""
    if not cap:
        return records
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    caps: defaultdict[str, PhraseCap] = defaultdict(lambda: PhraseCap(cap))
    dropped = set()
    for i in order:
        r = records[i]
        if r.get("source") == "student" and not caps[r["task"]].admit(r["intent"], r["output"]):
            dropped.add(i)
    return [r for i, r in enumerate(records) if i not in dropped]


def build_tokenizer(texts: list[str], encoding: CommandEncoding, vocab_size: int):
    """A GPT-2-style byte-level BPE trained on ``texts``, with the command tokens as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [EOS, *encoding.special_tokens()]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS,
                                   pad_token=PAD, model_max_length=128)


def load_pretrained(init: str, encoding: CommandEncoding):
    """A pretrained GPT-2 keeps its tokenizer; command tokens are added and embeddings resized."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(init)
    for how_it_was_loaded in ("is_local", "local_files_only"):  # not settings to save with the student
        tokenizer.init_kwargs.pop(how_it_was_loaded, None)
    model = GPT2LMHeadModel.from_pretrained(init)
    add_command_tokens(tokenizer, encoding)
    model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer


def add_command_tokens(tokenizer, encoding: CommandEncoding):
    """A pretrained tokenizer (a GPT-2's, the teacher's) with the end, padding and command tokens added."""
    tokenizer.add_special_tokens({"eos_token": tokenizer.eos_token or EOS, "pad_token": PAD})
    tokenizer.add_tokens(encoding.special_tokens(), special_tokens=True)
    if EOS not in tokenizer.get_vocab():
        tokenizer.add_tokens([EOS], special_tokens=True)
    return tokenizer


def new_model(cfg: TrainConfig, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=cfg.dropout,
                        embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                        bos_token_id=tokenizer.convert_tokens_to_ids(EOS),
                        eos_token_id=tokenizer.convert_tokens_to_ids(EOS),
                        pad_token_id=tokenizer.convert_tokens_to_ids(PAD), tie_word_embeddings=True)
    return GPT2LMHeadModel(config)


def encode_records(records: list[dict], encoding: CommandEncoding, tokenizer, max_len: int,
                   guidance: dict[str, float] | None = None, rule: WordRule | None = None) -> list[dict]:
    """Token ids and labels (-100 on the command and intent) for each record. With ``guidance`` (task ->
    scale), also the record under its guidance reference command and the scale that applies to it. With
    ``rule``, the begun word before each label and the intent's words, for the word loss."""
    examples = []
    for r in records:
        prompt, completion = training_text(encoding, r)
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        word_only = bool(r.get("word_only"))  # a sample of the model's own: the word loss alone learns from it
        labels = [-100] * len(p) + ([-100] * len(c) if word_only else c)
        example = {"input_ids": (p + c)[:max_len], "labels": labels[:max_len]}
        if rule is not None:
            example |= {"word_states": ([None] * len(p) + rule.states(c))[:max_len],
                        "intent_words": own_words(r["intent"]), "own_token_allowed": not word_only}
        if guidance is not None:
            reference = encoding.guidance_reference(r["task"], r["rewards"]["relevance"])
            scale = guidance.get(r["task"], 1.0) if reference is not None else 1.0
            if scale != 1.0:
                text = prompt_text(encoding, r["intent"], r["task"], reference, r["rewards"]["length"])
                p = tokenizer(text, add_special_tokens=False)["input_ids"]
            example |= {"reference_ids": (p + c)[:max_len], "scale": scale}
        examples.append(example)
    return examples


def collate(pad_id: int, rule: WordRule | None = None):
    def fn(batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        guided = "reference_ids" in batch[0]
        references = torch.full_like(ids, pad_id) if guided else None
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
            if guided:
                references[i, :n] = torch.tensor(b["reference_ids"])
        out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if guided:
            out |= {"reference_ids": references, "scale": torch.tensor([b["scale"] for b in batch])}
        if rule is not None:
            out["word_positions"], out["word_allowed"] = allowed_tokens(batch, ids, rule)
        return out

    return fn


def allowed_tokens(batch: list[dict], ids: torch.Tensor, rule: WordRule) -> tuple[torch.Tensor, torch.Tensor]:
    """The output positions of the batch [B, T] and, for each in order, the tokens the word guard allows
    there [positions, V]. In a corpus record the token written there is allowed as well (the teacher's rare
    words stay learnable); in a sample of the model's own it is not."""
    positions = torch.zeros(ids.shape, dtype=torch.bool)
    masks, own = [], []
    for i, b in enumerate(batch):
        states = [s for s in b["word_states"] if s is not None]
        positions[i, len(b["word_states"]) - len(states) : len(b["word_states"])] = True
        masks.append(rule.allowed(states, b["intent_words"]))
        own += [b["own_token_allowed"]] * len(states)
    allowed = torch.cat(masks)
    own = torch.tensor(own, dtype=torch.bool)
    allowed[own.nonzero().squeeze(1), ids[positions][own]] = True
    return positions, allowed


def _prepare_assets(cfg: TrainConfig, state: Path, train_records: list[dict]):
    """Encoding + tokenizer + model, fresh or from the saved training state (so a resume is identical)."""
    from transformers import AutoTokenizer

    if cfg.resume and (state / "assets" / "udrl.json").is_file():
        encoding = CommandEncoding.load(state / "assets")
        tokenizer = AutoTokenizer.from_pretrained(state / "assets")
    else:
        if cfg.init and Path(cfg.init, ENCODING_FILE).is_file():
            # continuing a student: its command tokens keep the meaning they were trained with
            encoding = CommandEncoding.load(cfg.init)
        else:
            encoding = CommandEncoding.fit(train_records, bins=cfg.relevance_bins)
        if cfg.intent_slots:  # the slot tokens are added to the tokenizer with the command tokens
            if cfg.intent_slots < encoding.slots:  # the continued model writes the slots it has
                raise ValueError(f"{cfg.init} writes {encoding.slots} intent-word slots: --intent-slots may not "
                                 f"lower that to {cfg.intent_slots}")
            encoding.slots = cfg.intent_slots
        if cfg.init:
            _, tokenizer = load_pretrained(cfg.init, encoding)
        elif cfg.tokenizer == "teacher":
            from udrl.student.transfer import teacher_tokenizer

            tokenizer = add_command_tokens(teacher_tokenizer(), encoding)
            tokenizer.model_max_length = cfg.n_positions
        else:
            texts = [r["intent"] for r in train_records] + [r["output"] for r in train_records]
            if cfg.tokenizer == "english":  # pieces for the words people type, not only the corpus's
                from udrl.lexicon import english_text

                texts += english_text()
            tokenizer = build_tokenizer(texts, encoding, cfg.vocab_size)
        (state / "assets").mkdir(parents=True, exist_ok=True)
        encoding.save(state / "assets")
        tokenizer.save_pretrained(state / "assets")
    model = load_pretrained(cfg.init, encoding)[0] if cfg.init else new_model(cfg, tokenizer)
    if cfg.init and encoding.slots:
        _start_new_slot_forms(model, tokenizer, cfg.init, encoding.slots)
    if not cfg.init and cfg.init_embeddings == "teacher":
        from udrl.student.transfer import projected_embeddings

        with torch.no_grad():  # the output head is tied to these rows
            model.transformer.wte.weight.copy_(projected_embeddings(tokenizer, cfg.n_embd, seed=cfg.seed))
    return encoding, tokenizer, model


def _start_new_slot_forms(model, tokenizer, init: str, slots: int) -> None:
    """A slot token that the continued student at ``init`` did not have starts from the embedding of its
    word's as-written form where that one was trained (the same word), not from the mean embedding
    ``resize_token_embeddings`` gives a new token."""
    from udrl.student.slots import FORMS, slot_token

    config = Path(init, "config.json")
    if not config.is_file():  # a hub id: every slot token is new
        return
    trained = json.loads(config.read_text())["vocab_size"]
    vocab, rows = tokenizer.get_vocab(), model.get_input_embeddings().weight
    with torch.no_grad():  # the output head is tied to these rows
        for k in range(1, slots + 1):
            source = vocab[slot_token(k)]
            for form in FORMS:
                target = vocab[slot_token(k, form)]
                if target >= trained > source:
                    rows[target] = rows[source]


def guided_sampling(init: str | None) -> dict[str, Sampling]:
    """The sampling settings of the student that guidance distillation continues; at least one task must
    be guided (``python -m udrl tune`` chooses the scales)."""
    settings = load_sampling(init) if init else {}
    if not any(s.guidance_scale != 1.0 for s in settings.values()):
        raise ValueError(f"guidance distillation continues a student whose sampling.json guides at least one task; "
                         f"{init or 'no --init'} has none: pass --init with a tuned checkpoint "
                         "(`python -m udrl tune` writes its sampling.json)")
    return settings


def guided_kl(model, batch: dict[str, torch.Tensor], guide) -> torch.Tensor:
    """Mean KL divergence per output token from the guide's guided next-token distribution (its command
    and reference rows through :func:`guided_scores`, at each record's scale) to ``model``'s single pass."""
    keep = batch["labels"][:, 1:] != -100
    mask = batch["attention_mask"]
    with torch.no_grad():
        both = guide(input_ids=torch.cat([batch["input_ids"], batch["reference_ids"]]),
                     attention_mask=torch.cat([mask, mask])).logits[:, :-1]
        target = guided_scores(both, batch["scale"][:, None, None].to(both.dtype))[keep].log_softmax(-1)
    logits = model(input_ids=batch["input_ids"], attention_mask=mask).logits[:, :-1][keep]
    return F.kl_div(logits.log_softmax(-1), target, reduction="batchmean", log_target=True)


def _token_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss


def word_loss(model, batch: dict[str, torch.Tensor], weight: float) -> torch.Tensor:
    """The token loss plus ``weight`` times the mean over output positions of -log P(a token the guard
    allows); a position after a word no token can make real any more is left out."""
    labelled = bool((batch["labels"] != -100).any())
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                labels=batch["labels"] if labelled else None)
    allowed = batch["word_allowed"]
    live = allowed.any(-1)
    # the first position holds a command token, never an output: positions[:, 1:] keeps their order
    scores = out.logits[:, :-1][batch["word_positions"][:, 1:]][live].float()
    off = scores.logsumexp(-1) - scores.masked_fill(~allowed[live], float("-inf")).logsumexp(-1)
    token_loss = out.loss if labelled else out.logits.new_zeros(())
    return token_loss + weight * (off.mean() if len(off) else 0.0)


def train(cfg: TrainConfig) -> dict:
    """Train, evaluate held-out loss each epoch, save a resumable state and the final checkpoint."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import GenerationConfig, get_cosine_schedule_with_warmup

    accelerator = Accelerator()
    set_seed(cfg.seed)
    state = Path(cfg.state_dir or f"runs/{Path(cfg.out).name}-state")
    # read before training: ``out`` may be the checkpoint being continued
    earlier = _earlier_training(cfg.init)
    guide_sampling = guided_sampling(cfg.init) if cfg.distil_guidance else None
    scales = {t: s.guidance_scale for t, s in guide_sampling.items()} if guide_sampling else None
    records = [r for r in load_corpus(cfg.corpus) if usable(r)]
    train_records = [r for r in records if r["split"] == "train"]
    # augmented records join the training split only: the held-out loss stays on the teacher's test samples
    augmented = [r for folder in filter(None, (cfg.augmented or "").split(","))
                 for r in load_corpus(folder.strip(), split="train") if usable(r)]
    augmented = cap_rollout_phrases(augmented, cfg.phrase_cap, cfg.seed)
    train_records += augmented
    # outputs annotators preferred (`python -m udrl feedback`), training split only, like the augmented ones
    feedback = [r for r in load_corpus(cfg.feedback, split="train") if usable(r)] if cfg.feedback else []
    train_records += feedback
    # the student's own outputs with invented words (`rollouts --keep mistakes`): for the word loss only
    word_samples = [{**r, "word_only": True} for folder in filter(None, (cfg.word_samples or "").split(","))
                    for r in load_corpus(folder.strip(), split="train") if usable(r)]
    train_records += word_samples
    heldout_records = [r for r in records if r["split"] == "test"]
    if not train_records:
        raise ValueError(f"no training records in {cfg.corpus}")
    encoding, tokenizer, model = _prepare_assets(cfg, state, train_records)
    pad_id = tokenizer.convert_tokens_to_ids(PAD)
    max_len = model.config.n_positions
    rule = WordRule.for_tokenizer(tokenizer, tokenizer.convert_tokens_to_ids(EOS)) if cfg.word_loss else None
    train_set = encode_records(train_records, encoding, tokenizer, max_len, scales, rule)
    heldout_set = encode_records(heldout_records, encoding, tokenizer, max_len, scales)
    loss_of = _token_loss
    if scales:  # the model being continued, frozen before any step, is the guide
        guide = copy.deepcopy(model).eval().requires_grad_(False).to(accelerator.device)
        loss_of = functools.partial(guided_kl, guide=guide)
    elif rule is not None:
        loss_of = functools.partial(word_loss, weight=cfg.word_loss)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate(pad_id, rule),
                        generator=torch.Generator().manual_seed(cfg.seed))
    # the held-out loss stays the token loss (comparable across runs) unless guidance distillation sets it
    heldout_loss_of = loss_of if scales else _token_loss
    heldout = DataLoader(heldout_set or train_set[:256], batch_size=cfg.batch_size, collate_fn=collate(pad_id))

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    total_steps = cfg.max_steps or cfg.epochs * math.ceil(len(loader) / accelerator.num_processes)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup * total_steps), total_steps)
    model, optimizer, loader, heldout, scheduler = accelerator.prepare(model, optimizer, loader, heldout,
                                                                       scheduler)
    progress_file = state / "progress.json"
    start_epoch, history = 0, []
    if cfg.resume and progress_file.is_file():
        saved = json.loads(progress_file.read_text())
        accelerator.load_state(str(state / "accelerate"))
        start_epoch, history = saved["epoch"], saved["history"]
        accelerator.print(f"resuming after epoch {start_epoch}")

    step = start_epoch * len(loader)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and
                                                                               accelerator.is_main_process))
        running = None
        for batch in bar:
            loss = loss_of(model, batch)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            step += 1
            if cfg.max_steps and step >= cfg.max_steps:
                break
        heldout_loss = evaluate_loss(model, heldout, accelerator, heldout_loss_of)
        history.append({"epoch": epoch + 1, "train_loss": round(running or float("nan"), 4),
                        "heldout_loss": round(heldout_loss, 4)})
        accelerator.print(f"epoch {epoch + 1}: train loss {running:.3f}, held-out loss {heldout_loss:.3f}")
        accelerator.save_state(str(state / "accelerate"))
        if accelerator.is_main_process:
            progress_file.write_text(json.dumps({"epoch": epoch + 1, "history": history}))
        if cfg.max_steps and step >= cfg.max_steps:
            break

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.generation_config = GenerationConfig(
            do_sample=True, temperature=DEFAULT_TEMPERATURE, top_p=DEFAULT_TOP_P, max_new_tokens=96,
            eos_token_id=tokenizer.convert_tokens_to_ids(EOS), pad_token_id=pad_id)
        unwrapped.save_pretrained(out)
        tokenizer.save_pretrained(out)
        encoding.save(out)
        if scales:  # the same temperature and top-p, now without a second pass
            save_sampling(out, {t: s.replace(guidance_scale=1.0) for t, s in guide_sampling.items()},
                          {"command": invocation("train", "udrl.train.train")})
        from udrl.student.gguf import GGUF_NAME, export_gguf

        export_gguf(unwrapped, tokenizer, out / GGUF_NAME)  # for llama.cpp decoding
        c = unwrapped.config
        info = {"config": asdict(cfg), "history": history, "train_records": len(train_records),
                "augmented_records": len(augmented),
                "rollout_records": sum(r.get("source") == "student" for r in augmented),
                "feedback_records": len(feedback), "word_sample_records": len(word_samples),
                "heldout_records": len(heldout_records),
                "parameters": sum(p.numel() for p in unwrapped.parameters()),
                "architecture": {"n_layer": c.n_layer, "n_embd": c.n_embd, "n_head": c.n_head,
                                 "vocab_size": c.vocab_size},
                "continued_from": earlier}
        if scales:
            info["distilled_guidance"] = scales
        (out / "training.json").write_text(json.dumps(info, indent=2))
        from udrl.cards import write_model_card

        write_model_card(out)
        return info
    return {}


def _earlier_training(init: str | None) -> dict | None:
    """The ``training.json`` of a student checkpoint being continued (its stages so far), if any."""
    path = Path(init, "training.json") if init else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


@torch.no_grad()
def evaluate_loss(model, loader, accelerator, loss_of=_token_loss) -> float:
    """Mean loss per output token over a loader (all processes)."""
    model.eval()
    total, count = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
    for batch in loader:
        n = (batch["labels"][:, 1:] != -100).sum()
        total += loss_of(model, batch) * n
        count += n
    total, count = accelerator.reduce(total), accelerator.reduce(count)
    model.train()
    return float(total / count.clamp(min=1))

