"""SGLang's own norm classes and functions, called on CPU tensors with the plugin loaded by SGLang."""
from __future__ import annotations

import pytest
import torch

import normswitch as ns
from normswitch.modules import LayerNormFP32
from normswitch.ops._inputs import rand
from normswitch.ops.layer_norm import reference_layer_norm
from normswitch.ops.norm_gated import reference as reference_norm_gated
from normswitch.ops.rms_norm import reference_fused_add, reference_rms_norm

from ..ops.harness import assert_close
from .conftest import calls, sample

pytest.importorskip("sglang", reason="SGLang is not installed (scripts/install_sglang.sh)")

LAYERNORM = "sglang.srt.layers.layernorm"
GATED = "sglang.kernels.ops.attention.fla.layernorm_gated"
DTYPES = (torch.float32, torch.bfloat16)


@pytest.fixture(autouse=True)
def plugin(sglang_plugin, counting):
    return sglang_plugin


def test_report_names_what_is_hooked_in_sglang_0_5_23(plugin):
    assert plugin.via == "HookRegistry"
    for cls in ("RMSNorm", "GemmaRMSNorm", "LayerNorm"):
        assert f"{LAYERNORM}.{cls}.forward_native" in plugin.hooked
        assert f"{LAYERNORM}.{cls}.forward_cuda" in plugin.hooked
    for fn in ("_layer_norm_fwd", "rms_norm_gated", "layernorm_fn"):
        assert f"{GATED}.{fn}" in plugin.hooked
    assert "sglang.srt.models.deepseek_ocr.LayerNormfp32" in plugin.hooked
    assert plugin.skipped == {f"{GATED}.rmsnorm_fn": "not present in this SGLang version"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 96), (2, 3, 64)])
def test_rms_norm(dtype, shape):
    from sglang.srt.layers.layernorm import RMSNorm

    norm = RMSNorm(shape[-1], eps=1e-6).to(dtype)
    norm.weight.data.normal_()
    x = rand(shape, dtype, "cpu")
    before = calls("rms_norm")
    y = norm(x)
    assert calls("rms_norm") == before + 1
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, reference_rms_norm(x, norm.weight, 1e-6)[0], dtype, "SGLang RMSNorm")
    sglang_native = type(norm).forward_native.__wrapped__(norm, x)
    assert_close(y, sglang_native.double(), dtype, "SGLang's own forward_native")


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_with_residual(dtype):
    from sglang.srt.layers.layernorm import RMSNorm

    norm = RMSNorm(128).to(dtype)
    norm.weight.data.normal_()
    x, residual = rand((6, 128), dtype, "cpu"), rand((6, 128), dtype, "cpu")
    before = calls("fused_add_rms_norm")
    y, r = norm(x.clone(), residual.clone())
    assert calls("fused_add_rms_norm") == before + 1
    ref_y, ref_r = reference_fused_add(x, residual, norm.weight, 1e-6)
    assert_close(r, ref_r, dtype, "residual")
    assert_close(y, ref_y, dtype, "SGLang RMSNorm + residual")


def test_rms_norm_post_residual_addition():
    from sglang.srt.layers.layernorm import RMSNorm

    norm = RMSNorm(64)
    x, residual, post = (rand((4, 64), torch.float32, "cpu") for _ in range(3))
    y, r = norm(x, residual, post)
    ref_y, ref_r = reference_fused_add(x, residual + post, norm.weight, 1e-6)
    assert_close(r, ref_r, torch.float32, "residual")
    assert_close(y, ref_y, torch.float32, "norm")


def test_rms_norm_options_outside_the_contract_stay_on_sglang():
    from sglang.srt.layers.layernorm import RMSNorm

    norm = RMSNorm(64, var_hidden_size=32)
    x = rand((4, 64), torch.float32, "cpu")
    before = calls("rms_norm")
    y = norm(x)
    assert calls("rms_norm") == before
    assert torch.equal(y, type(norm).forward_native.__wrapped__(norm, x))


@pytest.mark.parametrize("residual", [False, True])
def test_gemma_rms_norm(residual):
    from sglang.srt.layers.layernorm import GemmaRMSNorm

    norm = GemmaRMSNorm(64)
    norm.weight.data.normal_(std=0.2)
    x, res = rand((3, 64), torch.bfloat16, "cpu"), rand((3, 64), torch.bfloat16, "cpu")
    op = "fused_add_rms_norm" if residual else "rms_norm"
    before = calls(op)
    with torch.no_grad():
        out = norm(x, res) if residual else norm(x)
    assert calls(op) == before + 1
    if residual:
        ref_y, _ = reference_fused_add(x, res, norm.weight, 1e-6, 1.0)
        out = out[0]
    else:
        ref_y = reference_rms_norm(x, norm.weight, 1e-6, 1.0)[0]
    assert_close(out, ref_y, torch.bfloat16, "SGLang GemmaRMSNorm")


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm(dtype):
    from sglang.srt.layers.layernorm import LayerNorm

    norm = LayerNorm(80, eps=1e-5)
    norm.weight.data.normal_()
    norm.bias.data.normal_()
    x = rand((2, 7, 80), dtype, "cpu")
    before = calls("layer_norm")
    with torch.no_grad():
        y = norm(x)
    assert calls("layer_norm") == before + 1
    assert y.dtype == dtype
    assert_close(y, reference_layer_norm(x, norm.weight, norm.bias, 1e-5)[0], dtype, "SGLang LayerNorm")


# -- the FLA gated norm: SGLang's Triton kernel cannot run on CPU; normswitch serves it --------

def _gated_inputs(m=6, n=128, dtype=torch.float32):
    x, z = rand((m, n), dtype, "cpu"), rand((m, n), dtype, "cpu")
    weight, bias = torch.randn(n), torch.randn(n)
    return x, z, weight, bias


@pytest.mark.parametrize("is_rms_norm", [False, True])
@pytest.mark.parametrize("norm_before_gate", [True, False])
@pytest.mark.parametrize("group_size", [None, 32])
def test_layernorm_fn(is_rms_norm, norm_before_gate, group_size):
    from sglang.kernels.ops.attention.fla.layernorm_gated import layernorm_fn

    x, z, weight, bias = _gated_inputs(dtype=torch.bfloat16)
    before = calls("norm_gated")
    y = layernorm_fn(x, weight, bias, z=z, eps=1e-6, group_size=group_size,
                     norm_before_gate=norm_before_gate, is_rms_norm=is_rms_norm)
    assert calls("norm_gated") == before + 1
    ref, _, _ = reference_norm_gated(x, weight, bias, z, 1e-6, group_size, norm_before_gate, is_rms_norm)
    assert_close(y, ref, torch.bfloat16, "SGLang layernorm_fn")


def test_rms_norm_gated_and_layer_norm_fwd():
    from sglang.kernels.ops.attention.fla import layernorm_gated as lg

    x, z, weight, _ = _gated_inputs()
    ref, _, ref_rstd = reference_norm_gated(x, weight, None, z, 1e-6, 64, True, True)
    before = calls("norm_gated")
    y = lg.rms_norm_gated(x=x.view(2, 3, 128), weight=weight, bias=None, z=z.view(2, 3, 128),
                          eps=1e-6, group_size=64, is_rms_norm=True)
    assert y.shape == (2, 3, 128)
    assert_close(y.view(6, 128), ref, torch.float32, "rms_norm_gated")
    y2, mean, rstd = lg._layer_norm_fwd(x, weight, None, 1e-6, z=z.view(3, 2, 128), group_size=64,
                                        is_rms_norm=True)
    assert calls("norm_gated") == before + 2
    assert mean is None and rstd.shape == (12,)
    assert_close(y2, ref, torch.float32, "_layer_norm_fwd with a 3-D gate")
    assert_close(rstd, ref_rstd, torch.float32, "rstd")


def test_gated_norm_modules():
    from sglang.kernels.ops.attention.fla.layernorm_gated import LayerNorm, RMSNorm

    x, z, _, _ = _gated_inputs()
    rms, ln = RMSNorm(128, eps=1e-5, group_size=32), LayerNorm(128, eps=1e-5, norm_before_gate=False)
    before = calls("norm_gated")
    y_rms, y_ln = rms(x, z), ln(x, z)
    assert calls("norm_gated") == before + 2
    ref_rms, _, _ = reference_norm_gated(x, rms.weight, None, z, 1e-5, 32, True, True)
    ref_ln, _, _ = reference_norm_gated(x, ln.weight, ln.bias, z, 1e-5, None, False, False)
    assert_close(y_rms, ref_rms, torch.float32, "SGLang gated RMSNorm")
    assert_close(y_ln, ref_ln, torch.float32, "SGLang gated LayerNorm")


def test_sigmoid_gate_is_handed_back_to_sglangs_kernel():
    from sglang.kernels.ops.attention.fla.layernorm_gated import layernorm_fn

    x, z, weight, _ = _gated_inputs()
    before = calls("norm_gated")
    with pytest.raises(Exception):  # noqa: B017  (SGLang's Triton kernel fails without CUDA; its error type is Triton's)
        layernorm_fn(x, weight, None, z=z, activation="sigmoid")
    assert calls("norm_gated") == before


def test_triton_requested_on_cpu_falls_back(monkeypatch):
    from sglang.kernels.ops.attention.fla.layernorm_gated import layernorm_fn

    monkeypatch.setenv("NORMSWITCH_BACKEND_NORM_GATED", "triton")
    ns.reset()
    x, z, weight, bias = _gated_inputs()
    y = layernorm_fn(x, weight, bias, z=z)
    assert_close(y, reference_norm_gated(x, weight, bias, z, 1e-6, None, True, False)[0], torch.float32, "y")
    assert calls("norm_gated") >= 1
    assert sample("normswitch_backend_selected", op="norm_gated", device="cpu", backend="triton", bucket="all") == 0
    assert calls("norm_gated", backend="triton") == 0


def test_use_native_layernorm(monkeypatch):
    from sglang.srt.layers.layernorm import RMSNorm

    monkeypatch.setenv("USE_NATIVE_LAYERNORM", "1")
    ns.reset()
    before = calls("rms_norm")
    RMSNorm(64)(rand((2, 64), torch.float32, "cpu"))
    assert calls("rms_norm") == before + 1


# -- DeepSeek-OCR -------------------------------------------------------------------------------

def test_deepseek_ocr_vision_fp32_layernorm_is_normswitch():
    from sglang.srt.models import deepseek_ocr

    assert deepseek_ocr.LayerNormfp32 is LayerNormFP32
    cfg = {**deepseek_ocr.vit_model_cfg, "num_layers": 1, "hidden_size": 64, "num_heads": 4,
           "num_attention_heads": 4, "ffn_hidden_size": 128, "fp32norm": True}
    vit = deepseek_ocr.VitModel(cfg).to(torch.bfloat16)
    norm = vit.pre_layrnorm
    assert type(norm) is LayerNormFP32 and norm.eps == cfg["pre_layernorm_epsilon"]
    norm.weight.data.normal_()
    x = rand((1, 257, 64), torch.bfloat16, "cpu")
    before = calls("layer_norm")
    with torch.no_grad():
        y = norm(x)
    assert calls("layer_norm") == before + 1
    assert_close(y, reference_layer_norm(x, norm.weight, norm.bias, 1e-5)[0], torch.bfloat16, "LayerNormfp32")


# -- out-of-tree platforms: SGLang's register_oot_forward ---------------------------------------

def test_out_of_tree_platform_gets_normswitch_forwards(monkeypatch):
    from sglang.kernels import fused_op
    from sglang.srt.layers.layernorm import RMSNorm

    from normswitch.plugin import sglang as plugin

    monkeypatch.setattr(fused_op.BaseFusedOp, "_oot_forward_registry", {})
    monkeypatch.setattr(fused_op, "_oot_dispatch_key", lambda: "gcu")
    report = plugin.Report()
    plugin._register_oot(report, plugin._layer_hooks(report))
    assert f"{LAYERNORM}.RMSNorm (out-of-tree forward, key 'gcu')" in report.hooked
    assert set(fused_op.BaseFusedOp._oot_forward_registry["gcu"]) >= {RMSNorm}
    norm = RMSNorm(64)
    before = calls("rms_norm")
    norm(rand((2, 64), torch.float32, "cpu"))
    assert calls("rms_norm") == before + 1
    assert norm._forward_method.__func__ is fused_op.BaseFusedOp._oot_forward_registry["gcu"][RMSNorm]
