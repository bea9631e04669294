"""SGLang's DeepSeek-OCR 2 (and DeepSeek-OCR) vision towers, built on CPU with the plugin loaded by
SGLang: every norm is a normswitch module, each call is counted, and the tower's output matches
the same tower built by SGLang's own builder (``__wrapped__``) with the same parameters."""
from __future__ import annotations

import pytest
import torch

from normswitch.modules import LayerNorm2d, LayerNormFP32, RMSNorm
from normswitch.plugin.sglang import vision

from .conftest import calls

pytest.importorskip("sglang", reason="SGLang is not installed (scripts/install_sglang.sh)")

OCR = "sglang.srt.models.deepseek_ocr"
# A small Qwen2 encoder: 2 layers of width 64 (2 heads of 32, one KV head).
QWEN2 = {"decoder_layer": 2, "hidden_dimension": 64, "num_attention_heads": 2,
         "num_key_value_heads": 1, "intermediate_size": 128}
# A small SAM: 2 blocks of width 64 (the image size, 1024, and the neck stay SGLang's).
SAM = {"encoder_embed_dim": 64, "encoder_depth": 2, "encoder_num_heads": 2,
       "encoder_global_attn_indexes": [1]}


@pytest.fixture(autouse=True)
def plugin(sglang_plugin, counting):
    return sglang_plugin


@pytest.fixture
def ocr(monkeypatch):
    """SGLang's DeepSeek-OCR model module, its SAM builder making the small SAM above."""
    from sglang.srt.models import deepseek_ocr

    build_sam = deepseek_ocr._build_sam
    monkeypatch.setattr(deepseek_ocr, "_build_sam", lambda **kw: build_sam(**{**kw, **SAM}))
    return deepseek_ocr


def _norms(tower: torch.nn.Module) -> dict[str, type]:
    return {name: type(m) for name, m in tower.named_modules() if "Norm" in type(m).__name__}


def _randomize(tower: torch.nn.Module, seed: int = 0) -> None:
    """Norm weights 1 + U(-0.1, 0.1) and biases U(-0.1, 0.1), so that they matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, module in sorted(tower.named_modules()):
            if "Norm" in type(module).__name__:
                for name, p in sorted(module.named_parameters(recurse=False)):
                    u = (torch.rand(p.shape, generator=gen) * 2 - 1) * 0.1
                    p.copy_(1.0 + u if name == "weight" else u)


def _sglang_copy(builder, tower: torch.nn.Module, *args, **kwargs) -> torch.nn.Module:
    """The tower built by SGLang's own ``builder`` (unhooked), with ``tower``'s parameters."""
    ref = builder.__wrapped__(*args, **kwargs)
    assert not [t for t in _norms(ref).values() if t.__module__.startswith("normswitch")]
    ref.load_state_dict(tower.state_dict())  # same parameter names: SGLang's loading is unchanged
    return ref.eval()


def test_tower_builders_are_hooked(plugin):
    assert {f"{OCR}.{name}" for name in vision.BUILDERS} <= set(plugin.hooked)


def test_ocr2_qwen2_encoder_norms_are_normswitch(ocr):
    encoder = ocr.build_qwen2_decoder_as_encoder(**QWEN2).eval()
    norms = _norms(encoder)
    assert len(norms) == 2 * QWEN2["decoder_layer"] + 1, norms  # input, post-attention; final norm
    assert set(norms.values()) == {RMSNorm}
    _randomize(encoder)
    reference = _sglang_copy(ocr.build_qwen2_decoder_as_encoder, encoder, **QWEN2)

    x = torch.randn(1, QWEN2["hidden_dimension"], 12, 12)  # 144 SAM features: the 768-px queries
    before = calls("rms_norm")
    y = encoder(x)
    assert calls("rms_norm") == before + len(norms)
    torch.testing.assert_close(y, reference(x), rtol=1e-4, atol=1e-4)


def test_ocr2_sam_norms_are_normswitch(ocr):
    sam = ocr.build_sam_vit_b(net_3_out_channels=896)
    norms = _norms(sam)
    layer_norms = sorted(k for k, t in norms.items() if t is LayerNormFP32)
    assert sorted(k for k, t in norms.items() if t is LayerNorm2d) == ["neck.1", "neck.3"]
    assert len(layer_norms) == 2 * SAM["encoder_depth"] and len(norms) == len(layer_norms) + 2
    assert sam.blocks[0].norm1.eps == 1e-6  # SGLang's eps is kept
    _randomize(sam)
    reference = _sglang_copy(ocr.build_sam_vit_b, sam, net_3_out_channels=896)

    x = torch.randn(1, 3, 1024, 1024)
    before = calls("layer_norm"), calls("layer_norm_channels_first")
    y = sam(x)
    assert (calls("layer_norm"), calls("layer_norm_channels_first")) == (before[0] + len(layer_norms),
                                                                          before[1] + 2)
    assert y.shape == (1, 896, 16, 16)
    torch.testing.assert_close(y, reference(x), rtol=1e-4, atol=1e-4)


def test_ocr_clip_norms_are_normswitch(ocr, monkeypatch):
    """DeepSeek-OCR's CLIP tower (small here): ``pre_layrnorm`` and each layer's two norms."""
    cfg = {**ocr.vit_model_cfg, "num_layers": 1, "hidden_size": 64, "num_heads": 4,
           "num_attention_heads": 4, "ffn_hidden_size": 128}
    monkeypatch.setattr(ocr, "vit_model_cfg", cfg)
    clip = ocr.build_clip_l()
    norms = _norms(clip)
    assert len(norms) == 3 and set(norms.values()) == {LayerNormFP32}, norms
    assert type(clip.pre_layrnorm) is LayerNormFP32
