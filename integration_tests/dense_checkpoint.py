"""A dense decoder checkpoint of hidden size 4096 (Llama layout), config and tokenizer only.

Engines load it with ``load_format="dummy"``; the tokenizer is the tiny byte-level BPE of the
DeepSeek-OCR builder, so the vocabulary is small while every norm sees rows of 4096.
"""
from __future__ import annotations

import json
from pathlib import Path

from normswitch.demo import checkpoint

HIDDEN = 4096


def dense_config(hidden: int = HIDDEN, layers: int = 2) -> dict:
    """``config.json`` of a Llama-layout decoder: 32 heads of 128, 8 KV heads, SwiGLU MLP."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": checkpoint.VOCAB_SIZE,
        "hidden_size": hidden,
        "intermediate_size": hidden * 7 // 2,
        "num_hidden_layers": layers,
        "num_attention_heads": hidden // 128,
        "num_key_value_heads": max(1, hidden // 512),
        "head_dim": 128,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "bfloat16",
    }


def build_dense_checkpoint(path: str | Path, hidden: int = HIDDEN, layers: int = 2) -> Path:
    """Write the dense checkpoint into ``path`` (created if missing) and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(dense_config(hidden, layers), indent=2))
    generation = {"bos_token_id": 0, "eos_token_id": 1, "do_sample": False}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    checkpoint.write_tokenizer(path)
    return path
