"""A lean KV-cache decoder over a ``GPT2LMHeadModel``'s own weights, for fast CPU sampling.

Why by hand: for a model of a few million parameters, ``generate`` spends most of its time in Python
(logits processors, cache objects, stopping criteria) rather than in matrix products. This loop runs the
same arithmetic as GPT-2 (pre-LayerNorm blocks, tanh GELU, causal attention) with a preallocated cache
and one fused matmul per projection, so per-token time is close to the model's own compute. Its logits
equal ``GPT2LMHeadModel``'s (tests check this within 1e-4).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from udrl.llamacpp import model_params

if TYPE_CHECKING:
    from udrl.student.guard import WordGuard


@dataclass
class _Layer:
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    qkv_w: torch.Tensor  # [embd, 3*embd] (GPT-2's Conv1D layout: x @ W + b)
    qkv_b: torch.Tensor
    proj_w: torch.Tensor
    proj_b: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    fc_w: torch.Tensor
    fc_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor


class FastGPT2:
    """Inference-only GPT-2 forward with a static KV cache; shares (does not copy) the model's tensors."""

    SHARD_ROWS = 16  # rows per thread from which a batch is split into shards (see :meth:`generate`)

    def __init__(self, model):
        cfg = model.config
        if getattr(cfg, "activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError("FastGPT2 supports GPT-2's tanh GELU only")
        t = model.transformer
        self.n_head = cfg.n_head
        self.n_embd = cfg.n_embd
        self.head_dim = cfg.n_embd // cfg.n_head
        self.n_positions = cfg.n_positions
        self.eps = cfg.layer_norm_epsilon
        self.wte = t.wte.weight.detach()
        self.wpe = t.wpe.weight.detach()
        self.lnf_w, self.lnf_b = t.ln_f.weight.detach(), t.ln_f.bias.detach()
        self.lm_head = model.lm_head.weight.detach()
        self.layers = [
            _Layer(b.ln_1.weight.detach(), b.ln_1.bias.detach(), b.attn.c_attn.weight.detach(),
                   b.attn.c_attn.bias.detach(), b.attn.c_proj.weight.detach(), b.attn.c_proj.bias.detach(),
                   b.ln_2.weight.detach(), b.ln_2.bias.detach(), b.mlp.c_fc.weight.detach(),
                   b.mlp.c_fc.bias.detach(), b.mlp.c_proj.weight.detach(), b.mlp.c_proj.bias.detach())
            for b in t.h
        ]

    def new_cache(self, batch: int, length: int) -> list[torch.Tensor]:
        """One [2, batch, heads, length, head_dim] tensor per layer."""
        shape = (2, batch, self.n_head, length, self.head_dim)
        return [torch.empty(shape, dtype=self.wte.dtype) for _ in self.layers]

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: list[torch.Tensor], start: int,
                key_mask: torch.Tensor | None) -> torch.Tensor:
        """Logits of the last position for ``ids`` [B, T] written at cache slots ``start:start+T``
        (arguments as for :meth:`hidden`)."""
        return self.hidden(ids, positions, cache, start, key_mask) @ self.lm_head.T

    @torch.inference_mode()
    def hidden(self, ids: torch.Tensor, positions: torch.Tensor, cache: list[torch.Tensor], start: int,
               key_mask: torch.Tensor | None) -> torch.Tensor:
        """The final hidden state (after ``ln_f``) of the last position for ``ids`` [B, T] written at
        cache slots ``start:start+T``; the logits are this times the (bias-free) head.

        ``key_mask`` [B, >= start+T] is True where a cache slot holds a real token; ``None`` when no row
        has padding (then attention is plainly causal, the fastest path).
        """
        B, T = ids.shape
        end = start + T
        x = F.embedding(ids, self.wte) + F.embedding(positions, self.wpe)
        if key_mask is None:
            mask, causal = None, T > 1 and start == 0
            if T > 1 and start > 0:
                mask = torch.ones(T, end, dtype=torch.bool).tril(diagonal=start)
        else:
            causal = False
            mask = key_mask[:, None, None, :end]
            if T > 1:
                mask = mask & torch.ones(T, end, dtype=torch.bool).tril(diagonal=start)
        for layer, kv in zip(self.layers, cache):
            h = F.layer_norm(x, (self.n_embd,), layer.ln1_w, layer.ln1_b, self.eps)
            qkv = torch.addmm(layer.qkv_b, h.view(B * T, -1), layer.qkv_w).view(B, T, 3, self.n_head,
                                                                                  self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, T, D]
            kv[0, :, :, start:end] = k
            kv[1, :, :, start:end] = v
            a = F.scaled_dot_product_attention(q, kv[0, :, :, :end], kv[1, :, :, :end], attn_mask=mask,
                                               is_causal=causal)
            a = a.transpose(1, 2).reshape(B * T, self.n_embd)
            x = x + torch.addmm(layer.proj_b, a, layer.proj_w).view(B, T, -1)
            h = F.layer_norm(x, (self.n_embd,), layer.ln2_w, layer.ln2_b, self.eps)
            h = F.gelu(torch.addmm(layer.fc_b, h.view(B * T, -1), layer.fc_w), approximate="tanh")
            x = x + torch.addmm(layer.out_b, h, layer.out_w).view(B, T, -1)
        return F.layer_norm(x[:, -1], (self.n_embd,), self.lnf_w, self.lnf_b, self.eps)

    def generate(self, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int,
                 temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
                 references: list[list[int]] | None = None, guidance_scale: float = 1.0,
                 repetition_penalty: float = 1.0, guard: WordGuard | None = None, group: int = 1,
                 sibling_penalty: float = 1.0, banned: list[int] | None = None) -> list[list[int]]:
        """Sample continuations of token-id prompts (left-padded into one batch); stop at ``eos_id``.

        Sampling draws from the same distribution as ``generate(do_sample=True)`` (logits / temperature,
        then top-p filtering; see :func:`_sample`); ``temperature=0`` is greedy and equals ``generate``.
        With ``references`` (one per prompt, as long as it) and ``guidance_scale`` != 1, tokens are drawn
        from :func:`guided_scores`, as ``generate(guidance_scale=, negative_prompt_ids=)`` does; the
        reference rows run in the same batch and are fed the same tokens. A ``repetition_penalty`` other
        than 1 is applied after guidance, to the tokens each output already holds (:func:`penalize_repeats`).
        A ``guard`` (one row per prompt) redraws tokens that would leave real words (:mod:`udrl.student.guard`).
        A ``sibling_penalty`` other than 1 lowers tokens that would repeat a token pair already written in
        the same ``group`` of consecutive prompts (one intent's outputs; :mod:`udrl.student.variety`).
        Tokens in ``banned`` are never drawn (a character of another task's form, as a headline's ";").

        A batch of at least ``SHARD_ROWS`` rows (prompts and references) per torch thread is split into
        one shard per thread, decoded side by side on one thread each: a small model's operations share
        poorly between threads (docs/results.md has the measurements). Each shard draws from its own
        generator, seeded from ``generator``: the same seed and thread count give the same outputs.
        """
        references = references if _check_guidance(prompts, references, guidance_scale) else None
        rows = len(prompts) * (1 if references is None else 2)
        shards = min(torch.get_num_threads(), rows // self.SHARD_ROWS)
        if shards < 2:
            return self._generate(prompts, max_new_tokens, eos_id, pad_id, temperature, top_p, generator,
                                  references, guidance_scale, repetition_penalty, guard, group, sibling_penalty,
                                  banned)
        seeds = torch.randint(2**62, (shards,), generator=generator).tolist()
        size = -(-len(prompts) // shards)
        size = -(-size // group) * group  # a group's rows stay in one shard
        with _SHARDING:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # process-wide: the lock keeps sharded batches from overlapping
            try:
                jobs = [_shard_pool().submit(self._generate, prompts[i : i + size], max_new_tokens, eos_id, pad_id,
                                             temperature, top_p, torch.Generator().manual_seed(seed),
                                             None if references is None else references[i : i + size],
                                             guidance_scale, repetition_penalty,
                                             None if guard is None else guard.slice(i, i + size), group,
                                             sibling_penalty, banned)
                        for i, seed in zip(range(0, len(prompts), size), seeds)]
                return [tokens for job in jobs for tokens in job.result()]
            finally:
                torch.set_num_threads(threads)

    @torch.inference_mode()
    def _generate(self, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int,
                  temperature: float, top_p: float, generator: torch.Generator | None,
                  references: list[list[int]] | None, guidance_scale: float,
                  repetition_penalty: float = 1.0, guard: WordGuard | None = None, group: int = 1,
                  sibling_penalty: float = 1.0, banned: list[int] | None = None) -> list[list[int]]:
        """:meth:`generate` on one batch, in the calling thread (``references`` only when guided)."""
        siblings = _siblings(prompts, group, sibling_penalty, eos_id)
        guided = references is not None
        if guided:
            prompts = list(prompts) + list(references)
        B = len(prompts)
        P = max(len(p) for p in prompts)
        max_new_tokens = max(0, min(max_new_tokens, self.n_positions - P))
        if max_new_tokens == 0:
            return [[] for _ in prompts]
        ids = torch.full((B, P), pad_id, dtype=torch.long)
        padded = any(len(p) < P for p in prompts)
        key_mask = torch.ones(B, P + max_new_tokens, dtype=torch.bool) if padded else None
        for i, p in enumerate(prompts):
            ids[i, P - len(p):] = torch.tensor(p)
            if padded:
                key_mask[i, : P - len(p)] = False
        if padded:
            positions = (key_mask[:, :P].long().cumsum(1) - 1).clamp(min=0)
        else:
            positions = torch.arange(P).expand(B, P)
        cache = self.new_cache(B, P + max_new_tokens)
        hidden = self.hidden(ids, positions, cache, 0, key_mask)
        next_pos = positions[:, -1:] + 1
        n_out = B // 2 if guided else B
        out = torch.full((n_out, max_new_tokens), eos_id, dtype=torch.long)
        rows = torch.arange(n_out)  # output row -> prompt index; finished rows are dropped from the batch
        alive = torch.ones(n_out, dtype=torch.bool)
        # which tokens each output holds so far, for the repetition penalty
        seen = torch.zeros(n_out, self.lm_head.shape[0], dtype=torch.bool) if repetition_penalty != 1.0 else None
        for step in range(max_new_tokens):
            # the head is linear: guiding the hidden states gives the guided logits for half the product
            scores = (guided_scores(hidden, guidance_scale) if guided else hidden) @ self.lm_head.T
            if banned:
                scores[:, banned] = float("-inf")
            if seen is not None:
                scores = penalize_repeats(scores, seen, repetition_penalty)
            if siblings is not None:
                scores = siblings.penalize(scores, rows, alive)
            token = _draw_guarded(scores, temperature, top_p, generator, guard, rows, alive,
                                  last=step == max_new_tokens - 1, siblings=siblings)
            if seen is not None:
                seen.scatter_(1, token[:, None], True)
            if siblings is not None:
                siblings.add(token, rows, alive)
            out[rows[alive], step] = token[alive]
            alive &= token != eos_id
            live = int(alive.sum())
            if live == 0 or step == max_new_tokens - 1:
                break
            if len(rows) - live >= max(1, len(rows) // 4):
                # a finished row still costs a full forward: drop them once they are a quarter of the batch
                filled = P + step
                both = alive.repeat(2) if guided else alive
                rows, token = rows[alive], token[alive]
                seen = seen[alive] if seen is not None else None
                next_pos = next_pos[both]
                key_mask = key_mask[both] if key_mask is not None else None
                cache = self._select(cache, both, filled)
                alive = torch.ones(live, dtype=torch.bool)
            fed = token.repeat(2) if guided else token
            hidden = self.hidden(fed[:, None], next_pos, cache, P + step, key_mask)
            next_pos = next_pos + 1
        return [row[: row.index(eos_id)] if eos_id in row else row for row in out.tolist()]

    def _select(self, cache: list[torch.Tensor], keep: torch.Tensor, filled: int) -> list[torch.Tensor]:
        """The cache rows in ``keep``, copying only the ``filled`` slots (the rest is written later)."""
        fresh = self.new_cache(int(keep.sum()), cache[0].shape[3])
        for new, old in zip(fresh, cache):
            new[:, :, :, :filled] = old[:, keep, :, :filled]
        return fresh


_SHARDING = threading.Lock()


@functools.cache
def _shard_pool() -> ThreadPoolExecutor:
    """The threads that decode shards: made on first use and kept, so each keeps torch's one-thread
    setting (taken when a thread first runs an operation)."""
    return ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="udrl-shard")


def guided_scores(logits: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Command guidance: rows ``[:B]`` are conditioned on the command, rows ``[B:]`` on a reference.

    ``log p(.|reference) + s * (log p(.|command) - log p(.|reference))``: classifier-free guidance
    (Sanchez et al., 2023; transformers' ``UnbatchedClassifierFreeGuidanceLogitsProcessor``) with a
    contrasting command in place of an empty prompt, so the difference the command makes is scaled by s.
    Computed on the raw logits: the result differs from that formula by a constant per row (the two
    log-normalisers), which softmax, top-p and argmax ignore, and it skips two passes over the vocabulary.
    Being linear, it may equally be applied to the final hidden states before a bias-free linear head.
    """
    half = logits.shape[0] // 2
    return torch.lerp(logits[half:], logits[:half], guidance_scale)


def penalized(logits: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al., 2019) on every one of ``logits``: a positive logit is
    divided by ``penalty``, a negative one multiplied, as transformers' ``RepetitionPenaltyLogitsProcessor``
    does to the tokens it is given.

    The sign is split by clamping rather than by ``torch.where(logits < 0, ...)``: the same values, bit for
    bit, without the comparison feeding ``where``, the slower part of that call inside the decoding loop.
    """
    return logits.clamp(min=0) / penalty + logits.clamp(max=0) * penalty


def penalize_repeats(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """:func:`penalized` on ``scores`` [B, V] where ``seen`` [B, V] is True (here, the output so far)."""
    return torch.where(seen, penalized(scores, penalty), scores)


def _siblings(prompts: list[list[int]], group: int, penalty: float, eos_id: int):
    """The sibling penalty's record of token pairs (:mod:`udrl.student.variety`), or None when it is off."""
    if penalty == 1.0 or group < 2:
        return None
    from udrl.student.variety import SiblingPairs  # which imports this module's penalty

    return SiblingPairs(prompts, group, penalty, eos_id)


def _check_guidance(prompts: list[list[int]], references: list[list[int]] | None, guidance_scale: float) -> bool:
    """Whether decoding is guided; references must pair up with the prompts."""
    if references is None or guidance_scale == 1.0:
        return False
    if len(references) != len(prompts) or any(len(a) != len(b) for a, b in zip(prompts, references)):
        raise ValueError("each reference prompt must be as long as its prompt")
    return True


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator) -> torch.Tensor:
    """One token per row: logits / temperature, nucleus (top-p) filtering, one draw; greedy at 0.

    The distribution is transformers' (``TopPLogitsWarper`` then softmax), drawn without sorting the
    vocabulary, which cost more than the model's forward pass at batch 32: each row draws from its full
    softmax and keeps the token if the nucleus holds it (:func:`mass_above` < ``top_p``), else draws
    again. A kept draw is a draw from the renormalised nucleus, and one draw in ``top_p`` or more is
    kept; rows still drawing after ``REJECTION_ROUNDS`` (a tiny ``top_p`` over a flat distribution) sort.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    probs = (logits / temperature).softmax(-1)
    token = _draw(probs, generator)
    if top_p >= 1.0:
        return token
    rows = (mass_above(probs, token[:, None]).squeeze(1) >= top_p).nonzero().squeeze(1)
    for _ in range(REJECTION_ROUNDS):
        if len(rows) == 0:
            return token
        token[rows] = _draw(probs[rows], generator)
        rows = rows[mass_above(probs[rows], token[rows, None]).squeeze(1) >= top_p]
    if len(rows):
        token[rows] = _draw_sorted(probs[rows], top_p, generator)
    return token


REJECTION_ROUNDS = 8


def _draw_guarded(scores: torch.Tensor, temperature: float, top_p: float, generator, guard: WordGuard | None,
                  rows: torch.Tensor, alive: torch.Tensor, last: bool, siblings=None) -> torch.Tensor:
    """One token per row; under ``guard`` a begun subject word is carried on and a token that would leave
    real words is redrawn (``rows``, ``alive`` and ``last`` as in :meth:`WordGuard.enforce`); with
    ``siblings`` (:class:`udrl.student.variety.SiblingPairs`) a row drawing the pair an earlier row of its
    group drew at the same step draws again."""
    def draw(s: torch.Tensor) -> torch.Tensor:
        return _sample(s, temperature, top_p, generator)

    if guard is not None:
        scores = guard.steer(scores, rows, alive)
    token = draw(scores)
    if siblings is not None:
        token = siblings.part(scores, token, rows, alive, draw)
    return token if guard is None else guard.enforce(scores, token, rows, alive, draw, last=last)


def mass_above(probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[B, K] probability mass of the tokens more likely than each of ``tokens`` [B, K]: the nucleus
    (transformers' rule) keeps a token when this is below ``top_p``."""
    p = probs.gather(1, tokens)
    return torch.where(probs[:, None, :] > p[:, :, None], probs[:, None, :], 0.0).sum(-1)


def _draw(probs: torch.Tensor, generator) -> torch.Tensor:
    """One token per row from ``probs`` (unnormalised is fine), by inverse CDF: the first token whose
    cumulative mass exceeds ``u``, uniform below the total; if rounding puts ``u`` at the total, the
    last token with any mass (never one of the zeros after it)."""
    cumulative = probs.cumsum(-1)
    total = cumulative[:, -1:].contiguous()
    u = torch.rand(total.shape, generator=generator) * total
    pick = torch.searchsorted(cumulative, u, right=True)
    return torch.minimum(pick, torch.searchsorted(cumulative, total)).squeeze(1)


def _draw_sorted(probs: torch.Tensor, top_p: float, generator) -> torch.Tensor:
    """One token per row from the nucleus found by sorting (the most likely token is always kept)."""
    ranked, order = probs.sort(-1, descending=True)
    kept = torch.where(ranked.cumsum(-1) - ranked < top_p, ranked, 0.0)
    return order.gather(1, _draw(kept, generator)[:, None]).squeeze(1)


class LlamaCppGPT2:
    """Single-stream decoding of the student's GGUF export (see ``udrl.student.gguf``) with llama.cpp.

    llama.cpp runs the forward pass; sampling uses the same torch sampler as :class:`FastGPT2`, so both
    paths give the same tokens for the same seed whenever their logits agree. ggml's kernels are not
    PyTorch's: on the committed checkpoint the logits differ by up to about 3e-3 (of values up to ~12),
    within 1e-4 on the small test model. Tokens go to ``llama_decode`` through one preallocated batch,
    and flash attention is on: both faster per token than ``Llama.eval``. A guided
    prompt and its reference are two sequences of the same context, decoded together.
    """

    def __init__(self, gguf_path: str, n_ctx: int, n_threads: int):
        import llama_cpp
        from llama_cpp._internals import LlamaContext, LlamaModel

        # llama.cpp's messages go through this logger; unset, it prints every loading detail, and its
        # level map is one off ggml's (warnings arrive as errors). Failures surface as exceptions here.
        log = logging.getLogger("llama-cpp-python")
        if log.level == logging.NOTSET:
            log.setLevel(logging.CRITICAL)

        self._lib = llama_cpp  # bound once: ``_decode`` and ``last_logits`` run for every token
        self.n_ctx = n_ctx
        # llama-cpp-python's ``Llama`` opens a single-sequence context only: the model and a context that
        # holds a prompt and its guidance reference are opened here with its own (quiet) wrappers
        llama_cpp.llama_backend_init()
        self._model = LlamaModel(path_model=str(gguf_path), params=model_params(), verbose=False)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = 2 * n_ctx
        params.n_threads = params.n_threads_batch = n_threads
        params.n_seq_max, params.kv_unified = 2, False  # a cache of n_ctx cells for each sequence
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self._context = LlamaContext(model=self._model, params=params, verbose=False)
        self._ctx = self._context.ctx
        self.n_vocab = self._model.n_vocab()
        self._batch = llama_cpp.llama_batch_init(2 * n_ctx, 0, 1)

    def _decode(self, sequences: list[list[int]], start: int) -> None:
        """Run each sequence's ``tokens`` (sequence id = its index) at positions ``start...``, keeping
        the logits of each sequence's last token."""
        batch, n = self._batch, 0
        for seq, tokens in enumerate(sequences):
            for i, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, start + i, 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = i == len(tokens) - 1
                n += 1
        batch.n_tokens = n
        if self._lib.llama_decode(self._ctx, batch) != 0:
            raise RuntimeError(f"llama.cpp could not decode {n} tokens at position {start}")

    def prefill(self, prompts: list[list[int]]) -> None:
        """Forget earlier sequences and run ``prompts`` (one or two); :meth:`last_logits` then predicts
        what follows each."""
        self._lib.llama_memory_clear(self._lib.llama_get_memory(self._ctx), True)
        self._decode(prompts, 0)

    def last_logits(self, sequences: int = 1) -> torch.Tensor:
        """A copy of the logits after the last token of each sequence, shape [sequences, vocab]."""
        pointer = self._lib.llama_get_logits(self._ctx)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(sequences, self.n_vocab)).copy())

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
            from llama_cpp._utils import suppress_stdout_stderr

            with suppress_stdout_stderr(disable=False):  # ggml logs the freed buffers
                self._context.close()
                self._model.close()

    def generate(self, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int,
                 temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
                 references: list[list[int]] | None = None, guidance_scale: float = 1.0,
                 repetition_penalty: float = 1.0, guard: WordGuard | None = None, group: int = 1,
                 sibling_penalty: float = 1.0, banned: list[int] | None = None) -> list[list[int]]:
        """Same contract as :meth:`FastGPT2.generate`; prompts are decoded one after the other (so under the
        sibling penalty a later output sees all of an earlier sibling's pairs)."""
        guided = _check_guidance(prompts, references, guidance_scale)
        siblings = _siblings(prompts, group, sibling_penalty, eos_id)
        results = []
        live = torch.ones(1, dtype=torch.bool)
        for k, prompt in enumerate(prompts):
            sequences = [prompt, references[k]] if guided else [prompt]
            budget = max(0, min(max_new_tokens, self.n_ctx - len(prompt)))
            self.prefill(sequences)
            out: list[int] = []
            seen = torch.zeros(1, self.n_vocab, dtype=torch.bool) if repetition_penalty != 1.0 else None
            row = torch.tensor([k])  # this prompt's row of the guard
            for step in range(budget):
                logits = self.last_logits(len(sequences))
                scores = guided_scores(logits, guidance_scale) if guided else logits
                if banned:
                    scores[:, banned] = float("-inf")
                if seen is not None:
                    scores = penalize_repeats(scores, seen, repetition_penalty)
                if siblings is not None:
                    scores = siblings.penalize(scores, row, live)
                token = int(_draw_guarded(scores, temperature, top_p, generator, guard, row, live,
                                          last=step == budget - 1))
                if seen is not None:
                    seen[0, token] = True
                if siblings is not None:
                    siblings.add(torch.tensor([token]), row, live)
                if token == eos_id:
                    break
                out.append(token)
                if len(out) < budget:
                    self._decode([[token]] * len(sequences), len(prompt) + len(out) - 1)
            results.append(out)
        return results
