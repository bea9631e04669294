"""Tiny random-weight DeepSeek-OCR and DeepSeek-OCR 2 checkpoints and a test image, made in code.

vLLM's ``DeepseekOCRForCausalLM`` hard-codes full-size SAM (ViT-B) and CLIP-L towers, and
``DeepseekOCR2ForCausalLM`` full-size SAM and a Qwen2 decoder used as the vision encoder (24
layers, width 896); only the DeepSeek-V2 language model and the projector are read from
``config.json``. Both models share the language model and the tokenizer. A checkpoint holds
``config.json``, ``generation_config.json`` and a byte-level BPE tokenizer trained here on a few
lines of text; engines load it with ``load_format="dummy"`` (random weights, nothing downloaded).
"""
from __future__ import annotations

import json
from pathlib import Path

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
IMAGE = "<image>"
SPECIAL_TOKENS = [BOS, EOS, PAD, IMAGE, "<|User|>", "<|Assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|User|>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<|Assistant|>{{ m['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|>{% endif %}"
)
VOCAB_SIZE = 512
HIDDEN = 128
OCR_PROMPT = "<image>\nFree OCR."

_CORPUS = [
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "normswitch serves RMSNorm and LayerNorm on every backend.",
    "Free OCR. Convert the document to markdown. <|grounding|>",
    "DeepSeek-OCR reads text from images: invoices, receipts, pages.",
]


def _language_config() -> dict:
    return {
        "architectures": ["DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v2",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": HIDDEN,
        "intermediate_size": 256,
        "moe_intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "n_routed_experts": 4,
        "num_experts_per_tok": 2,
        "n_shared_experts": 1,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "kv_lora_rank": None,
        "q_lora_rank": None,
        "use_mla": False,
        "qk_nope_head_dim": 0,
        "qk_rope_head_dim": 0,
        "v_head_dim": 0,
        "topk_method": "greedy",
        "n_group": 1,
        "topk_group": 1,
        "routed_scaling_factor": 1.0,
        "scoring_func": "softmax",
        "norm_topk_prob": False,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "bfloat16",
    }


def _ocr_config() -> dict:
    """DeepSeek-OCR: SAM + CLIP-L, whose features (1024 + 1024) the projector maps to the decoder."""
    return {
        "architectures": ["DeepseekOCRForCausalLM"],
        "model_type": "deepseek_vl_v2",
        "tile_tag": "2D",
        "global_view_pos": "head",
        "candidate_resolutions": [[1024, 1024]],
        "language_config": _language_config(),
        "projector_config": {"projector_type": "linear", "input_dim": 2048, "n_embed": HIDDEN},
        "vision_config": {"image_size": 1024, "mlp_ratio": 3.7362, "model_name": "deeplip_b_l",
                          "model_type": "vision", "width": {"clip-l-14-224": 1024, "sam_vit_b": 768}},
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "bfloat16",
    }


def _ocr2_config() -> dict:
    """DeepSeek-OCR 2: SAM + the Qwen2 encoder (width 896, which also marks the checkpoint as OCR 2
    for SGLang's ``is_ocr2_config``); vLLM's OCR 2 processor reads no vision settings but the
    base view size (``image_size``)."""
    return {
        "architectures": ["DeepseekOCR2ForCausalLM"],
        "model_type": "deepseek_vl_v2",
        "tile_tag": "2D",
        "global_view_pos": "head",
        "candidate_resolutions": [[1024, 1024]],
        "language_config": _language_config(),
        "projector_config": {"projector_type": "linear", "input_dim": 896, "n_embed": HIDDEN},
        "vision_config": {"image_size": 1024, "model_name": "deepencoderv2", "model_type": "vision"},
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "bfloat16",
    }


MODELS = {"ocr": _ocr_config, "ocr2": _ocr2_config}
"""Model name (``normswitch demo --model``) -> its ``config.json``."""


def model_config(model: str = "ocr") -> dict:
    """``config.json`` of the tiny checkpoint of ``model`` (a key of :data:`MODELS`)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return MODELS[model]()


def write_tokenizer(path: Path) -> None:
    """Write the byte-level BPE tokenizer (trained here on a few lines) and its config into ``path``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    # The small corpus gives fewer than VOCAB_SIZE tokens; fill the rest, so that every id the
    # model can sample decodes (an id without a token breaks vLLM's detokenizer).
    tok.add_tokens([f"<|unused_{i}|>" for i in range(VOCAB_SIZE - tok.get_vocab_size())])
    tok.save(str(path / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "LlamaTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": 2048,
        "legacy": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def build_checkpoint(path: str | Path, model: str = "ocr") -> Path:
    """Write the tiny checkpoint of ``model`` (``ocr`` or ``ocr2``) into ``path`` (created if
    missing) and return it."""
    path = Path(path)
    config = model_config(model)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    generation = {"bos_token_id": 0, "eos_token_id": 1, "do_sample": False}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    write_tokenizer(path)
    return path


def make_image(text: str = "normswitch 42", size: tuple[int, int] = (320, 240)):
    """A white PIL image with ``text`` drawn in black (no crops: both sides <= 640)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for row in range(3):
        draw.text((12, 20 + 70 * row), text, fill="black")
    draw.rectangle((4, 4, size[0] - 5, size[1] - 5), outline="black")
    return image


def image_data_url(image) -> str:
    """``data:image/png;base64,...`` for ``image``."""
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
