"""vLLM's and SGLang's norms, as normswitch replaces or hooks them, on an emulated npu/gcu device.

Run in a process of its own by ``test_emulated_devices.py``, after ``device_cases.py``. The
engines are imported and set up the way they are on CPU (``integration_tests/test_vllm_layers.py``,
``tests/sglang``) before the guards of ``guards.py`` are installed; the layers are then built and
called under the guards, with every tensor on the emulated device.
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch

from normswitch.modules import LayerNormFP32
from normswitch.ops import DECLARATIONS

from . import emulated
from .guards import NATIVE_CALLS, only_native  # noqa: F401  (autouse fixture)

DEVICE = emulated.setup(os.environ.get("EMULATED_DEVICE_TYPE", "npu"))
NAME = DEVICE.type
RMS_NORM, ADD, LAYER_NORM, GATED = (DECLARATIONS[op] for op in (
    "rms_norm", "fused_add_rms_norm", "layer_norm", "norm_gated"))
BF16 = torch.bfloat16
GATED_MODULE = "sglang.kernels.ops.attention.fla.layernorm_gated"


def rand(*shape: int, dtype: torch.dtype = BF16) -> torch.Tensor:
    return torch.randn(*shape, device=NAME).to(dtype)


def assert_close(out: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    from normswitch import numerics

    assert emulated.on_device(out), f"{what}: result on {out.device} ({type(out).__name__})"
    err, tol = numerics.max_error(out, ref), numerics.TOLERANCE[out.dtype]
    assert err <= tol, f"{what}: max relative error {err:.3g} > {tol:.3g} ({out.dtype})"


def on_device(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with random parameters (made on the CPU), moved with ``.to(device)``."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + 1.0)
    module.to(DEVICE)
    assert all(emulated.on_device(p) for p in module.parameters())
    return module


def served(op: str, call, count: int = 1):
    """``call()`` in inference mode (as the engines call their layers), which must reach
    normswitch's native ``op`` ``count`` times."""
    before = NATIVE_CALLS[op]
    with torch.inference_mode():
        result = call()
    assert NATIVE_CALLS[op] == before + count, f"{op}: {NATIVE_CALLS[op] - before} native calls"
    return result


# -- vLLM -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm():
    """vLLM's layernorm module with the normswitch replacements registered, and a vLLM config."""
    try:
        from vllm.config import CompilationConfig, VllmConfig
        from vllm.model_executor import custom_op
        from vllm.model_executor.layers import layernorm
    except Exception as exc:  # outside normswitch: the installed vLLM does not import
        pytest.skip(f"vLLM does not import here: {type(exc).__name__}: {exc}")
    from normswitch.plugin.vllm import layers

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(custom_op, "op_registry_oot", {})
        assert layers.register_layers() == {}
        yield layernorm, layers, VllmConfig(compilation_config=CompilationConfig(custom_ops=["all"]))


def build(vllm, name: str, *args, **kwargs):
    """vLLM's ``layernorm.<name>(...)``, built under the config: normswitch's replacement."""
    from vllm.config import set_current_vllm_config

    layernorm, layers, config = vllm
    with set_current_vllm_config(config):
        layer = getattr(layernorm, name)(*args, **kwargs)
    assert type(layer) is layers.REPLACEMENTS[name], type(layer)
    return layer


def paths(vllm, name: str) -> list[str]:
    """The platform paths normswitch routes in the replacement (forward_oot: an OOT platform
    such as vllm-ascend; forward_cuda/cpu/xpu/hip: whatever vLLM's dispatch picks)."""
    cls, layers = vllm[1].REPLACEMENTS[name], vllm[1]
    found = [m for m in layers.PLATFORM_PATHS if m in vars(cls)]
    assert "forward_oot" in found, found
    return found


def test_vllm_rms_norm_and_gemma_rms_norm(vllm):
    for name, offset in (("RMSNorm", 0.0), ("GemmaRMSNorm", 1.0)):
        layer = on_device(build(vllm, name, 256, eps=1e-6) if name == "GemmaRMSNorm"
                          else build(vllm, name, 256, eps=1e-6, dtype=BF16))
        w = layer.weight.data
        x, res = rand(5, 256), rand(5, 256)
        for path in paths(vllm, name):
            forward = getattr(layer, path)
            y = served("rms_norm", lambda: forward(x))  # noqa: B023
            assert_close(y, RMS_NORM.reference(x, w, 1e-6, offset)[0], f"vLLM {name}.{path}(x)")
            xi, ri = x.clone(), res.clone()
            y, r = served("fused_add_rms_norm", lambda: forward(xi, ri))  # noqa: B023
            assert y is xi and r is ri, "vLLM's fused add is in place"
            want_y, want_r = ADD.reference(x, res, w, 1e-6, offset)
            assert_close(y, want_y, f"vLLM {name}.{path}(x, residual)")
            assert_close(r, want_r, f"vLLM {name}.{path}(x, residual): residual")


def test_vllm_layer_norm(vllm):
    layer = on_device(build(vllm, "LayerNorm", 192, eps=1e-5))
    x = rand(2, 3, 192)
    want = LAYER_NORM.reference(x, layer.weight, layer.bias, 1e-5)[0]
    for path in paths(vllm, "LayerNorm"):
        y = served("layer_norm", lambda: getattr(layer, path)(x))  # noqa: B023
        assert y.shape == x.shape and y.dtype == BF16
        assert_close(y, want, f"vLLM LayerNorm.{path}")


@pytest.mark.parametrize("group_size, before", [(None, True), (64, False)])
def test_vllm_rms_norm_gated(vllm, group_size, before):
    # Built with device= the emulated device: vLLM makes the weight there (a factory on npu/gcu).
    layer = build(vllm, "RMSNormGated", 256, eps=1e-5, group_size=group_size, norm_before_gate=before,
                  device=DEVICE, dtype=BF16)
    assert emulated.on_device(layer.weight)
    layer.weight.data.normal_(1.0, 0.2)
    x, z = rand(6, 256), rand(6, 256)
    for path in paths(vllm, "RMSNormGated"):
        forward = getattr(layer, path)
        y = served("norm_gated", lambda: forward(x, z))  # noqa: B023
        want = GATED.reference(x, layer.weight, None, z, 1e-5, group_size, before, True)[0]
        assert_close(y, want, f"vLLM RMSNormGated.{path}(x, z)")
        y = served("norm_gated", lambda: forward(x))  # noqa: B023
        assert_close(y, GATED.reference(x, layer.weight, None, None, 1e-5, group_size, before, True)[0],
                     f"vLLM RMSNormGated.{path}(x)")


def test_vllm_forward_native_through_the_ir_provider(vllm):
    """vLLM's own forward_native (custom op disabled) goes through vLLM IR to normswitch."""
    from vllm import ir

    from normswitch.plugin.vllm import ir as plugin_ir

    plugin_ir.register_ir_providers()
    layer = on_device(build(vllm, "RMSNorm", 128, eps=1e-6, dtype=BF16))
    x, res = rand(7, 128), rand(7, 128)
    with ir.ops.rms_norm.set_priority([plugin_ir.PROVIDER, "native"]), \
            ir.ops.fused_add_rms_norm.set_priority([plugin_ir.PROVIDER, "native"]):
        y = served("rms_norm", lambda: layer.forward_native(x))
        y2, r2 = served("fused_add_rms_norm", lambda: layer.forward_native(x.clone(), res.clone()))
    assert_close(y, RMS_NORM.reference(x, layer.weight, 1e-6)[0], "vLLM RMSNorm.forward_native")
    want_y, want_r = ADD.reference(x, res, layer.weight, 1e-6)
    assert_close(y2, want_y, "vLLM RMSNorm.forward_native(x, residual)")
    assert_close(r2, want_r, "vLLM RMSNorm.forward_native(x, residual): residual")


# -- SGLang -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sglang():
    """The normswitch SGLang plugin enabled by hand (``enable()``); returns its report."""
    try:
        import sglang  # noqa: F401
    except Exception as exc:  # outside normswitch: the installed SGLang does not import
        pytest.skip(f"SGLang does not import here: {type(exc).__name__}: {exc}")
    from normswitch.plugin import sglang as plugin

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SGLang's import-time notes about CUDA-only quantization
        report = plugin.enable()
    return report


def _forwards(sglang, cls: type) -> list[str]:
    """The forwards of ``cls`` the plugin hooked (forward_npu among them: SGLang's NPU path)."""
    hooked = [t.rsplit(".", 1)[1] for t in sglang.hooked if t.startswith(f"{cls.__module__}.{cls.__name__}.")]
    assert "forward_native" in hooked and "forward_npu" in hooked, hooked
    return hooked


@pytest.mark.parametrize("name, offset", [("RMSNorm", 0.0), ("GemmaRMSNorm", 1.0)])
def test_sglang_rms_norm(sglang, name, offset):
    from sglang.srt.layers import layernorm

    cls = getattr(layernorm, name)
    norm = on_device(cls(128, eps=1e-6).to(BF16))
    x, res = rand(4, 128), rand(4, 128)
    for method in _forwards(sglang, cls):
        forward = getattr(norm, method)
        y = served("rms_norm", lambda: forward(x))  # noqa: B023
        assert_close(y, RMS_NORM.reference(x, norm.weight, 1e-6, offset)[0], f"SGLang {name}.{method}(x)")
        y, r = served("fused_add_rms_norm", lambda: forward(x, res))  # noqa: B023
        want_y, want_r = ADD.reference(x, res, norm.weight, 1e-6, offset)
        assert_close(y, want_y, f"SGLang {name}.{method}(x, residual)")
        assert_close(r, want_r, f"SGLang {name}.{method}(x, residual): residual")


def test_sglang_layer_norm_and_ocr_layer_norm(sglang):
    from sglang.srt.layers.layernorm import LayerNorm
    from sglang.srt.models import deepseek_ocr

    norm = on_device(LayerNorm(80, eps=1e-5))
    x = rand(2, 7, 80)
    want = LAYER_NORM.reference(x, norm.weight, norm.bias, 1e-5)[0]
    for method in _forwards(sglang, LayerNorm):
        y = served("layer_norm", lambda: getattr(norm, method)(x))  # noqa: B023
        assert y.dtype == BF16
        assert_close(y, want, f"SGLang LayerNorm.{method}")
    assert deepseek_ocr.LayerNormfp32 is LayerNormFP32
    ocr = on_device(deepseek_ocr.LayerNormfp32(80, eps=1e-6))
    y = served("layer_norm", lambda: ocr(x))
    assert_close(y, LAYER_NORM.reference(x, ocr.weight, ocr.bias, 1e-6)[0], "DeepSeek-OCR LayerNormfp32")


@pytest.mark.parametrize("is_rms_norm", [False, True])
@pytest.mark.parametrize("group_size, before", [(None, True), (32, False)])
def test_sglang_gated_functions(sglang, is_rms_norm, group_size, before):
    lg = pytest.importorskip(GATED_MODULE)
    x, z = rand(6, 128), rand(6, 128)
    w, b = rand(128, dtype=torch.float32), rand(128, dtype=torch.float32)
    bias = None if is_rms_norm else b
    want, _, want_rstd = GATED.reference(x, w, bias, z, 1e-6, group_size, before, is_rms_norm)
    y = served("norm_gated", lambda: lg.layernorm_fn(x, w, bias, z=z, eps=1e-6, group_size=group_size,
                                                     norm_before_gate=before, is_rms_norm=is_rms_norm))
    assert_close(y, want, "SGLang layernorm_fn")
    y = served("norm_gated", lambda: lg.rms_norm_gated(
        x=x.view(2, 3, 128), weight=w, bias=bias, z=z.view(2, 3, 128), eps=1e-6, group_size=group_size,
        norm_before_gate=before, is_rms_norm=is_rms_norm))
    assert y.shape == (2, 3, 128)
    assert_close(y.view(6, 128), want, "SGLang rms_norm_gated")
    y, mean, rstd = served("norm_gated", lambda: lg._layer_norm_fwd(
        x, w, bias, 1e-6, z=z.view(3, 2, 128), group_size=group_size, norm_before_gate=before,
        is_rms_norm=is_rms_norm))
    assert_close(y, want, "SGLang _layer_norm_fwd")
    assert_close(rstd, want_rstd, "SGLang _layer_norm_fwd: rstd")
    assert (mean is None) == is_rms_norm


def test_sglang_gated_layer_norm_module(sglang):
    lg = pytest.importorskip(GATED_MODULE)
    norm = on_device(lg.LayerNorm(128, eps=1e-5, group_size=64, norm_before_gate=False))
    x, z = rand(6, 128, dtype=torch.float32), rand(6, 128, dtype=torch.float32)
    y = served("norm_gated", lambda: norm(x, z))
    assert_close(y, GATED.reference(x, norm.weight, norm.bias, z, 1e-5, 64, False, False)[0],
                 "SGLang layernorm_gated.LayerNorm")


def test_sglang_rmsnorm_fn(sglang):
    lg = pytest.importorskip(GATED_MODULE)
    if not callable(getattr(lg, "rmsnorm_fn", None)):
        pytest.skip(f"{GATED_MODULE}.rmsnorm_fn is not in this SGLang version (plugin report: "
                    f"{sglang.skipped.get(f'{GATED_MODULE}.rmsnorm_fn')!r})")
    x, z, w = rand(6, 128), rand(6, 128), rand(128, dtype=torch.float32)
    y = served("norm_gated", lambda: lg.rmsnorm_fn(x, w, None, z=z, eps=1e-6))
    assert_close(y, GATED.reference(x, w, None, z, 1e-6, None, True, True)[0], "SGLang rmsnorm_fn")
