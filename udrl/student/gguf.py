"""Export the student (a ``GPT2LMHeadModel`` + its byte-level BPE tokenizer) to a GGUF file for llama.cpp.

Written here because llama.cpp's own converter is a script outside its Python package. The layout follows
llama.cpp's ``gpt2`` architecture; weights stay float32 so logits match PyTorch's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GGUF_NAME = "student-f32.gguf"


def export_gguf(model, tokenizer, path: str | Path) -> Path:
    """Write ``model`` and ``tokenizer`` as a float32 GGUF; returns the path."""
    import gguf

    cfg = model.config
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), arch="gpt2")
    writer.add_name("udrl-student")
    writer.add_context_length(cfg.n_positions)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(cfg.n_inner or 4 * cfg.n_embd)
    writer.add_head_count(cfg.n_head)
    writer.add_layer_norm_eps(cfg.layer_norm_epsilon)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    n_vocab = model.get_input_embeddings().weight.shape[0]
    tokens = [f"<|unused{i}|>" for i in range(n_vocab)]  # rows no token maps to (padding of the table)
    for token, index in tokenizer.get_vocab().items():
        if index < n_vocab:
            tokens[index] = token
    special = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {}))
    types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.eos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)

    def f32(t) -> np.ndarray:
        return t.detach().to("cpu").float().numpy()

    t = model.transformer
    writer.add_tensor("token_embd.weight", f32(t.wte.weight))
    writer.add_tensor("position_embd.weight", f32(t.wpe.weight))
    writer.add_tensor("output_norm.weight", f32(t.ln_f.weight))
    writer.add_tensor("output_norm.bias", f32(t.ln_f.bias))
    writer.add_tensor("output.weight", f32(model.lm_head.weight))
    for i, block in enumerate(t.h):
        # GPT-2's Conv1D keeps weights as [in, out]; GGUF wants the Linear layout [out, in].
        named = {
            "attn_norm": (block.ln_1.weight, block.ln_1.bias, False),
            "attn_qkv": (block.attn.c_attn.weight, block.attn.c_attn.bias, True),
            "attn_output": (block.attn.c_proj.weight, block.attn.c_proj.bias, True),
            "ffn_norm": (block.ln_2.weight, block.ln_2.bias, False),
            "ffn_up": (block.mlp.c_fc.weight, block.mlp.c_fc.bias, True),
            "ffn_down": (block.mlp.c_proj.weight, block.mlp.c_proj.bias, True),
        }
        for name, (weight, bias, transpose) in named.items():
            w = f32(weight)
            writer.add_tensor(f"blk.{i}.{name}.weight", np.ascontiguousarray(w.T) if transpose else w)
            writer.add_tensor(f"blk.{i}.{name}.bias", f32(bias))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
