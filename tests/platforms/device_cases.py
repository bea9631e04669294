"""The ops and modules on an emulated npu/gcu device (``EMULATED_DEVICE_TYPE``, default npu).

Run in a process of its own by ``test_emulated_devices.py`` (PyTorch renames PrivateUse1 once per
process). Every test runs under the guards of ``guards.py``: the registry must pick ``native`` by
the tensors' device type and run it on the emulated device, with no CUDA, Triton or CPU kernel
on the way.
"""
from __future__ import annotations

import logging
import os
import sys

import pytest
import torch
from prometheus_client import REGISTRY as PROMETHEUS

import normswitch as ns
from normswitch import numerics
from normswitch.ops import DECLARATIONS, OPS
from normswitch.platform import tensor_device_type
from normswitch.registry import REGISTRY

from . import emulated
from .guards import NATIVE_CALLS, VIOLATIONS, ForbiddenPath, only_native  # noqa: F401  (autouse fixture)

DEVICE = emulated.setup(os.environ.get("EMULATED_DEVICE_TYPE", "npu"))
NAME = DEVICE.type
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
RMS_NORM, ADD, LAYER_NORM, CHANNELS_FIRST, GATED = (DECLARATIONS[op] for op in (
    "rms_norm", "fused_add_rms_norm", "layer_norm", "layer_norm_channels_first", "norm_gated"))


def sample(name: str, **labels: str) -> float:
    """A normswitch metric sample (0 when it was never set)."""
    return PROMETHEUS.get_sample_value(name, labels) or 0.0


def selected(op: str, backend: str = "native") -> float:
    return sample("normswitch_backend_selected", op=op, device=NAME, backend=backend, bucket="all")


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    assert emulated.on_device(out), f"{what}: result on {out.device} ({type(out).__name__})"
    err, tol = numerics.max_error(out, ref), numerics.TOLERANCE[dtype]
    assert err <= tol, f"{what}: max relative error {err:.3g} > {tol:.3g} ({dtype})"


def run_cases(op: str, dtypes=DTYPES) -> int:
    """Every generated case of ``op`` made on the emulated device: the native kernel runs once per
    non-empty call and every output matches the float64 reference. Returns the number of cases."""
    decl, count = DECLARATIONS[op], 0
    for dtype in dtypes:
        for case in decl.generate(NAME, dtype):
            x = next(iter(case.kwargs.values()))
            assert emulated.on_device(x), f"{op} {case.label}: input made on {x.device}"
            before = NATIVE_CALLS[op]
            result = case.run()
            assert NATIVE_CALLS[op] == before + (x.numel() > 0), f"{op} {case.label}: not served by native"
            for name, err, tol in case.errors(result):
                assert err <= tol, f"{op} {case.label} ({dtype}) {name}: error {err:.3g} > {tol:.3g}"
            for name, out in decl.outputs(result, case.kwargs).items():
                assert out is None or emulated.on_device(out), f"{op} {case.label}: {name} on {out.device}"
            count += 1
    return count


def test_the_device_is_a_privateuse1_device_for_pytorch():
    x = torch.randn(3, 8, device=NAME)
    assert type(x) is emulated.EmulatedTensor and x.device == DEVICE and not x.is_cpu
    assert tensor_device_type(x) == NAME
    assert torch._C._get_privateuse1_backend_name() == NAME
    assert "PrivateUse1" in str(torch._C._dispatch_keys(x))
    with pytest.raises(RuntimeError, match="same device"):
        x + torch.ones(3, 8)  # as on real hardware: no silent mixing with host tensors
    view = x.view(24)
    view.mul_(0)
    assert torch.equal(x.cpu(), torch.zeros(3, 8)), "a view must write the viewed memory"


def test_the_guards_fail_a_test_that_leaves_the_native_path():
    """The guards of every other test, tripped on purpose (then cleared)."""
    x, w = torch.randn(2, 8, device=NAME), torch.ones(8, device=NAME)
    with pytest.raises(ForbiddenPath):
        torch.cuda.is_available()
    with pytest.raises(ForbiddenPath):
        REGISTRY.impl("rms_norm", "cpu").fn(x, w, 1e-6, 0.0, None)
    with pytest.raises(ForbiddenPath):
        REGISTRY.impl("norm_gated", "triton").fn(x, w, None, None, 1e-6, 8, True, True, None)
    with pytest.raises(ForbiddenPath, match="off the emulated device"):
        REGISTRY.impl("rms_norm", "native").fn(x.cpu(), w.cpu(), 1e-6, 0.0, None)
    if "triton" not in sys.modules:
        with pytest.raises(ForbiddenPath):
            import triton  # noqa: F401
    assert VIOLATIONS
    VIOLATIONS.clear()


@pytest.mark.parametrize("op", OPS)
def test_every_generated_case_runs_native_on_the_device(op):
    assert run_cases(op) >= 6 * len(DTYPES)
    assert selected(op) == 1.0
    assert REGISTRY.config.backends(op, NAME).value == ("native",)


def test_results_are_written_into_the_given_tensors():
    x, res = torch.randn(2, 3, 64, device=NAME), torch.randn(2, 3, 64, device=NAME)
    w = torch.randn(64, device=NAME)
    want_y, want_r = ADD.reference(x, res, w, 1e-6)
    y, r = ns.fused_add_rms_norm(x, res, w, inplace=True)
    assert y is x and r is res
    assert_close(x, want_y, torch.float32, "fused_add_rms_norm in place: x")
    assert_close(res, want_r, torch.float32, "fused_add_rms_norm in place: residual")
    out = torch.empty(2, 3, 64, device=NAME)
    assert ns.rms_norm(x, w, out=out) is out
    assert_close(out, RMS_NORM.reference(x, w)[0], torch.float32, "rms_norm out=")
    assert ns.layer_norm(x, w, None, out=out) is out
    assert_close(out, LAYER_NORM.reference(x, w)[0], torch.float32, "layer_norm out=")
    x2, z = torch.randn(6, 64, device=NAME), torch.randn(6, 64, device=NAME)
    out2 = torch.empty(6, 64, device=NAME)
    y2, mean, rstd = ns.norm_gated(x2, w, None, z, 1e-6, 16, True, True, out2)
    assert y2 is out2 and mean is None
    ref_y, _, ref_rstd = GATED.reference(x2, w, None, z, 1e-6, 16, True, True)
    assert_close(out2, ref_y, torch.float32, "norm_gated out=")
    assert_close(rstd, ref_rstd, torch.float32, "norm_gated rstd")


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
def test_layernorm_fn_and_rmsnorm_fn(dtype):
    x, z = torch.randn(2, 3, 96, device=NAME).to(dtype), torch.randn(2, 3, 96, device=NAME).to(dtype)
    w, b = torch.randn(96, device=NAME), torch.randn(96, device=NAME)
    flat = (x.reshape(6, 96), z.reshape(6, 96))
    before = NATIVE_CALLS["norm_gated"]
    y = ns.layernorm_fn(x, w, b, z, 1e-6, group_size=32, norm_before_gate=False)
    assert_close(y.reshape(6, 96), GATED.reference(flat[0], w, b, flat[1], 1e-6, 32, False, False)[0],
                 dtype, "layernorm_fn")
    y = ns.rmsnorm_fn(x, w, None, z, 1e-6)
    assert_close(y.reshape(6, 96), GATED.reference(flat[0], w, None, flat[1], 1e-6, None, True, True)[0],
                 dtype, "rmsnorm_fn")
    assert NATIVE_CALLS["norm_gated"] == before + 2


def test_grad_mode_takes_the_differentiable_form():
    norm = ns.RMSNorm(64).to(DEVICE)
    x = torch.randn(3, 64, device=NAME)
    y = norm(x)
    y.float().square().sum().backward()
    assert emulated.on_device(norm.weight.grad)
    assert_close(y.detach(), RMS_NORM.reference(x, norm.weight.detach(), 1e-6)[0], torch.float32, "y")


def _randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial parameters (made on the CPU), then the module moved with ``.to(device)``."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + 1.0)
    module.to(DEVICE)
    for name, p in module.named_parameters():
        assert emulated.on_device(p) and isinstance(p, torch.nn.Parameter), f"{name} on {p.device}"
    return module


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
def test_modules(dtype):
    m, n = 5, 64
    x = torch.randn(m, n, device=NAME).to(dtype)
    res = torch.randn(m, n, device=NAME).to(dtype)
    z = torch.randn(m, n, device=NAME).to(dtype)
    with torch.inference_mode():
        rms = _randomize(ns.RMSNorm(n, eps=1e-6, dtype=dtype))
        assert_close(rms(x), RMS_NORM.reference(x, rms.weight, 1e-6)[0], dtype, "RMSNorm")
        for cls, offset in ((ns.RMSNorm, 0.0), (ns.GemmaRMSNorm, 1.0)):
            norm = _randomize(cls(n, eps=1e-6, dtype=dtype))
            want_y, want_r = ADD.reference(x, res, norm.weight, 1e-6, offset)
            y, r = norm(x, res)
            assert_close(y, want_y, dtype, f"{cls.__name__}(x, residual): y")
            assert_close(r, want_r, dtype, f"{cls.__name__}(x, residual): residual")
        gemma = _randomize(ns.GemmaRMSNorm(n, dtype=dtype))
        assert_close(gemma(x), RMS_NORM.reference(x, gemma.weight, 1e-6, 1.0)[0], dtype, "GemmaRMSNorm")
        ln = _randomize(ns.LayerNormFP32(n, eps=1e-5, dtype=dtype))
        assert_close(ln(x), LAYER_NORM.reference(x, ln.weight, ln.bias, 1e-5)[0], dtype, "LayerNormFP32")
        ln2 = _randomize(ns.LayerNormFP32((4, 16), eps=1e-5, dtype=dtype))
        want = LAYER_NORM.reference(x, ln2.weight.reshape(-1), ln2.bias.reshape(-1), 1e-5)[0]
        assert_close(ln2(x.view(m, 4, 16)).view(m, n), want, dtype, "LayerNormFP32((4, 16))")
        sam = _randomize(ns.LayerNorm2d(16, eps=1e-6, dtype=dtype))
        image = torch.randn(2, 16, 3, 5, device=NAME).to(dtype)
        want = CHANNELS_FIRST.reference(image, sam.weight, sam.bias, 1e-6)[0]
        assert_close(sam(image), want, dtype, "LayerNorm2d")
        for cls, rms_flag in ((ns.RMSNormGated, True), (ns.LayerNormGated, False)):
            norm = _randomize(cls(n, eps=1e-5, group_size=16, norm_before_gate=False, dtype=dtype))
            want = GATED.reference(x, norm.weight, norm.bias, z, 1e-5, 16, False, rms_flag)[0]
            assert_close(norm(x, z), want, dtype, f"{cls.__name__}(x, z)")
            want = GATED.reference(x, norm.weight, norm.bias, None, 1e-5, 16, False, rms_flag)[0]
            assert_close(norm(x), want, dtype, f"{cls.__name__}(x)")
    for op in OPS:
        assert selected(op) == 1.0, op


class _Records(logging.Handler):
    """The ``normswitch`` logger's records (its own handler: an engine plugin may have turned
    off propagation to the root logger)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warnings_of_normswitch():
    handler, logger = _Records(), logging.getLogger("normswitch")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def _fallbacks(op: str, frm: str) -> float:
    return sample("normswitch_fallbacks_total", op=op, device=NAME, from_backend=frm, to_backend="native",
                  reason="unavailable")


def test_use_native_layernorm_is_native(monkeypatch, warnings_of_normswitch):
    monkeypatch.setenv("USE_NATIVE_LAYERNORM", "1")
    ns.reset()
    for op in OPS:
        setting = REGISTRY.config.backends(op, NAME)
        assert setting.value == ("native",) and setting.source == "env USE_NATIVE_LAYERNORM=1"
        run_cases(op, (torch.bfloat16,))
        assert selected(op) == 1.0
    assert not warnings_of_normswitch, [r.getMessage() for r in warnings_of_normswitch]


def test_triton_requested_falls_back_to_native_once_per_op(monkeypatch, warnings_of_normswitch):
    monkeypatch.setenv("NORMSWITCH_BACKEND", "triton")
    ns.reset()
    before = {op: _fallbacks(op, "triton") for op in OPS}
    for op in OPS:
        assert REGISTRY.config.backends(op, NAME).value[0] == "triton"
        run_cases(op, (torch.float32, torch.bfloat16))  # many plans per op: one report only
    for op in OPS:
        assert _fallbacks(op, "triton") == before[op] + 1, op
        assert selected(op) == 1.0 and selected(op, "triton") == 0.0
        mine = [r.getMessage() for r in warnings_of_normswitch if r.args[:2] == (op, NAME)]
        assert len(mine) == 1, mine
        assert "backend 'triton' falls back to 'native'" in mine[0] and "unavailable" in mine[0], mine[0]
    assert len(warnings_of_normswitch) == len(OPS)
