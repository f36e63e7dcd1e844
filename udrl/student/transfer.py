"""What a new student can inherit from its teacher: the teacher's tokenizer, and token embeddings read from the
teacher's GGUF and projected to the student's width.

A byte-level BPE fitted on a few thousand teacher samples has no pieces for the words people type
("typewriter" becomes letters the model never saw together); the teacher's 49k-token BPE was fitted on a
large English corpus, and its embeddings already place related words near each other.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import torch


def teacher_tokenizer():
    """The teacher proxy's tokenizer, read from its GGUF (SmolLM2's byte-level BPE): a fresh copy, free to
    extend with command tokens."""
    return copy.deepcopy(_teacher_tokenizer())


@lru_cache(maxsize=1)
def _teacher_tokenizer():
    import os

    from transformers import AutoTokenizer

    from udrl.teacher import proxy_gguf_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gguf = proxy_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    for how_it_was_loaded in ("gguf_file", "is_local", "local_files_only"):  # not settings to save
        tokenizer.init_kwargs.pop(how_it_was_loaded, None)
    return tokenizer


@lru_cache(maxsize=1)
def teacher_embeddings() -> np.ndarray:
    """The teacher's input embedding matrix ``[vocab, width]`` as float32, dequantized from its GGUF."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from udrl.teacher import proxy_gguf_path

    reader = GGUFReader(str(proxy_gguf_path()))
    tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
    return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)


def projected_embeddings(tokenizer, width: int, std: float = 0.02, seed: int = 0) -> torch.Tensor:
    """Initial token embeddings ``[len(tokenizer), width]`` for a student: each token's text is split by the
    teacher's tokenizer and its teacher embeddings averaged, then all rows are projected on their ``width``
    principal components and scaled to ``std`` (GPT-2's initialisation scale). Tokens with no text of their
    own (the command tokens) keep random rows of that scale."""
    source = torch.from_numpy(teacher_embeddings())
    specials = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    texts = tokenizer.batch_decode([[index] for index in range(len(tokenizer))])
    pieces = teacher_tokenizer()(texts, add_special_tokens=False)["input_ids"]
    rows = torch.zeros(len(tokenizer), source.shape[1])
    known = torch.zeros(len(tokenizer), dtype=torch.bool)
    for index, ids in enumerate(pieces):
        ids = [i for i in ids if i < len(source)]
        if ids and index not in specials:
            rows[index], known[index] = source[ids].mean(dim=0), True
    centred = rows[known] - rows[known].mean(dim=0)
    # principal components of the known rows (the directions along which the teacher's embeddings vary
    # most), from the eigenvectors of their covariance, largest first
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    projected = centred @ vectors.flip(1)[:, :width]
    if projected.shape[1] < width:  # a student wider than the teacher: pad with zeros
        projected = torch.nn.functional.pad(projected, (0, width - projected.shape[1]))
    projected *= std / projected.std()
    generator = torch.Generator().manual_seed(seed)
    out = torch.randn(len(tokenizer), width, generator=generator) * std
    out[known] = projected
    return out
