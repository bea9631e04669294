"""The cuda backend on CPU: cheap import, availability reasons, provider selection (with fake
sgl-kernel and vLLM modules), injected import and compile failures, registry fall-through."""
import logging
import sys
import types

import pytest
import torch

import normswitch as ns
from normswitch.backend import Call
from normswitch.kernels import cuda
from normswitch.kernels.cuda import build, own, vllm_c

BF16 = torch.bfloat16


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv("NORMSWITCH_CUDA_PROVIDERS", raising=False)
    cuda.reset()
    yield
    cuda.reset()


class FakeExt:
    """Stands in for the compiled extension: records calls, writes a marker value."""

    def __init__(self):
        self.calls = []

    def row_norm(self, x, residual, res_out, weight, bias, z, out, mean, rstd, group, *rest):
        self.calls.append(("row_norm", x.shape, group, rest))
        out.fill_(7.0)
        if res_out is not None:
            res_out.fill_(5.0)

    def channels_first(self, x, weight, bias, out, eps):
        self.calls.append(("channels_first", x.shape))
        out.fill_(7.0)


def _fake_sgl(calls):
    mod = types.ModuleType("sgl_kernel")

    def rmsnorm(x, w, eps, out=None, enable_pdl=None):
        calls.append("rmsnorm")
        return out.fill_(1.0)

    def gemma_rmsnorm(x, w, eps, out=None, enable_pdl=None):
        calls.append("gemma_rmsnorm")
        return out.fill_(2.0)

    def fused_add_rmsnorm(x, r, w, eps, enable_pdl=None):
        calls.append("fused_add_rmsnorm")
        x.fill_(3.0)

    def gemma_fused_add_rmsnorm(x, r, w, eps, enable_pdl=None):
        calls.append("gemma_fused_add_rmsnorm")
        x.fill_(4.0)

    for f in (rmsnorm, gemma_rmsnorm, fused_add_rmsnorm, gemma_fused_add_rmsnorm):
        setattr(mod, f.__name__, f)
    return mod


@pytest.fixture
def gpu_like(monkeypatch):
    """Pretend this CPU machine has CUDA, a compiler and the extension (a fake one)."""
    monkeypatch.setattr(cuda, "_device_problem", lambda device_type: None)
    monkeypatch.setattr(build, "toolchain_problem", lambda: None)
    ext = FakeExt()
    monkeypatch.setattr(build, "load", lambda: ext)
    return ext


def _no_sgl_no_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "sgl_kernel", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "vllm._C", None)


# -- import and availability -------------------------------------------------------------------
def test_import_is_cheap_and_reports_why_unavailable():
    assert cuda.BACKEND.name == "cuda" and set(cuda.BACKEND.impls) >= {"rms_norm", "norm_gated"}
    assert "CUDA devices only" in cuda.BACKEND.availability("cpu")
    assert "ROCm" in cuda.BACKEND.availability("rocm")
    if torch.version.cuda is None:
        assert "CPU-only" in cuda.BACKEND.availability("cuda")
    assert build.EXTENSION.module is None  # nothing compiled at import or availability time


def test_import_failure_of_providers(monkeypatch, gpu_like):
    _no_sgl_no_vllm(monkeypatch)
    assert cuda.BACKEND.availability("cuda") is None  # own kernels remain
    text = cuda.BACKEND.details("rms_norm", "cuda")
    assert text.startswith("served by own")
    assert "sgl-kernel: not importable" in text and "vllm: not importable" in text
    assert [n for n, _ in cuda.chain("rms_norm")] == ["own"]


# -- provider selection ------------------------------------------------------------------------
def test_sgl_serves_what_it_can(monkeypatch, gpu_like):
    calls = []
    monkeypatch.setitem(sys.modules, "sgl_kernel", _fake_sgl(calls))
    monkeypatch.setitem(sys.modules, "vllm._C", None)
    rms = cuda.BACKEND.impls["rms_norm"]
    x, w = torch.randn(4, 64).to(BF16), torch.randn(64).to(BF16)
    assert rms(x, w, 1e-6, 0.0, None).eq(1.0).all() and calls == ["rmsnorm"]
    assert rms(x, w, 1e-6, 1.0, None).eq(2.0).all() and calls[-1] == "gemma_rmsnorm"
    # declined by sgl-kernel, served by the own kernels: fp32, other weight dtype, offset 0.5,
    # strided rows, no weight
    for args in [(x.float(), w.float(), 1e-6, 0.0, None), (x, w.float(), 1e-6, 0.0, None),
                 (x, w, 1e-6, 0.5, None), (torch.randn(4, 80).to(BF16)[:, :64], w, 1e-6, 0.0, None),
                 (x, None, 1e-6, 0.0, None)]:
        n = len(calls)
        assert rms(*args).eq(7.0).all() and len(calls) == n
    assert len(gpu_like.calls) == 5
    fused = cuda.BACKEND.impls["fused_add_rms_norm"]
    r = torch.randn(4, 64).to(BF16)
    y, s = fused(x.clone(), r.clone(), w, 1e-6, 0.0, True)
    assert y.eq(3.0).all() and calls[-1] == "fused_add_rmsnorm"
    fused(x.clone(), r.clone(), w, 1e-6, 1.0, True)
    assert calls[-1] == "gemma_fused_add_rmsnorm"
    y, s = fused(x, r, w, 1e-6, 0.0, False)  # out of place: own kernels
    assert y.eq(7.0).all() and s.eq(5.0).all()
    assert "served by sgl-kernel" in cuda.BACKEND.details("fused_add_rms_norm", "cuda")
    assert "served by own" in cuda.BACKEND.details("layer_norm", "cuda")


def test_vllm_serves_after_sgl(monkeypatch, gpu_like):
    seen = []
    ns_ops = types.SimpleNamespace(
        rms_norm=lambda out, x, w, eps: (seen.append("rms_norm"), out.fill_(8.0)),
        fused_add_rms_norm=lambda x, r, w, eps: (seen.append("fused"), x.fill_(9.0)))
    monkeypatch.setitem(sys.modules, "sgl_kernel", None)
    monkeypatch.setattr(vllm_c, "import_problem", lambda module, attrs: (object(), None))
    monkeypatch.setattr(vllm_c, "_namespace", lambda: ns_ops)
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", lambda op, key: True)
    x, w = torch.randn(3, 32), torch.randn(32)
    assert cuda.BACKEND.impls["rms_norm"](x, w, 1e-6, 0.0, None).eq(8.0).all()
    assert cuda.BACKEND.impls["rms_norm"](x, w, 1e-6, 1.0, None).eq(7.0).all()  # Gemma: own
    assert cuda.BACKEND.impls["fused_add_rms_norm"](x, x.clone(), w, 1e-6, 0.0, True)[0].eq(9.0).all()
    assert seen == ["rms_norm", "fused"]
    assert cuda.BACKEND.details("rms_norm", "cuda").startswith("served by vllm")


def test_vllm_cpu_build_is_unavailable(monkeypatch):
    monkeypatch.setattr(vllm_c, "import_problem", lambda module, attrs: (object(), None))
    monkeypatch.setattr(vllm_c, "_namespace", lambda: types.SimpleNamespace(
        rms_norm=None, fused_add_rms_norm=None))
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", lambda op, key: False)
    assert "no CUDA kernel" in vllm_c.PROVIDER.check()


def test_supports_and_order(monkeypatch, gpu_like):
    _no_sgl_no_vllm(monkeypatch)
    call = Call("rms_norm", "cuda", BF16, 4096, frozenset({"weight"}))
    assert cuda.BACKEND.supports(call) is None
    assert "float64" in cuda.BACKEND.supports(Call("rms_norm", "cuda", torch.float64, 8))
    monkeypatch.setenv("NORMSWITCH_CUDA_PROVIDERS", "sgl-kernel")
    cuda.reset()
    assert "no usable CUDA provider" in cuda.BACKEND.supports(call)
    with pytest.raises(cuda.NoProviderError):
        cuda.BACKEND.impls["rms_norm"](torch.randn(2, 8), None, 1e-6, 0.0, None)
    monkeypatch.setenv("NORMSWITCH_CUDA_PROVIDERS", "own,bogus")
    with pytest.raises(ValueError, match="bogus"):
        cuda.order()


def test_own_wrappers_pass_the_contract(gpu_like):
    x = torch.randn(6, 40)
    y, mean, rstd = own.norm_gated(x, torch.randn(40), None, torch.randn(6, 40).half(), 1e-6, 10,
                                   False, False, None)
    assert y.eq(7.0).all() and mean.shape == rstd.shape == (24,)
    assert own.norm_gated(x, torch.randn(40), None, None, 1e-6, 40, True, True, None)[1] is None
    assert own.layer_norm_channels_first(torch.randn(2, 3, 5), torch.randn(3),
                                         torch.randn(3).double(), 1e-6).eq(7.0).all()
    empty = own.rms_norm(torch.randn(0, 8), None, 1e-6, 0.0, None)
    assert empty.shape == (0, 8)
    assert [c[0] for c in gpu_like.calls] == ["row_norm", "row_norm", "channels_first"]


# -- injected compile failure ------------------------------------------------------------------
@pytest.fixture
def failing_compile(monkeypatch):
    from torch.utils import cpp_extension

    tries = []

    def broken_load(**kwargs):
        tries.append(kwargs["name"])
        raise RuntimeError("Error building extension: nvcc fatal: injected failure")

    monkeypatch.setattr(build, "toolchain_problem", lambda: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(build, "arch", lambda: "9.0")
    monkeypatch.setattr(cpp_extension, "load", broken_load)
    return tries


def test_compile_failure_is_remembered_and_reported(monkeypatch, tmp_path, failing_compile):
    monkeypatch.setenv("NORMSWITCH_CUDA_CACHE", str(tmp_path))
    monkeypatch.setattr(cuda, "_device_problem", lambda device_type: None)
    _no_sgl_no_vllm(monkeypatch)
    x = torch.randn(2, 8)
    for _ in range(2):
        with pytest.raises(build.CudaBuildError, match="injected failure"):
            own.rms_norm(x, None, 1e-6, 0.0, None)
    assert len(failing_compile) == 1  # not retried
    reason = cuda.BACKEND.availability("cuda")
    assert "own: compile failed" in reason and "sgl-kernel: not importable" in reason


def test_registry_falls_through_on_compile_failure(monkeypatch, tmp_path, failing_compile, caplog):
    """The cuda backend asked first on CPU tensors: its compile fails, native serves."""
    monkeypatch.setenv("NORMSWITCH_CUDA_CACHE", str(tmp_path))
    monkeypatch.setattr(cuda, "_device_problem", lambda device_type: None)
    _no_sgl_no_vllm(monkeypatch)
    monkeypatch.setenv("NORMSWITCH_BACKEND", "cuda")
    ns.reset()
    x, w = torch.randn(3, 16), torch.randn(16)
    with caplog.at_level(logging.WARNING, logger="normswitch"):
        y = ns.rms_norm(x, w)
    torch.testing.assert_close(y, ns.rms_norm(x, w, backend="native"))
    assert any("compile failed" in r.getMessage() or "injected" in r.getMessage()
               for r in caplog.records)


def test_registry_falls_through_when_the_module_cannot_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "normswitch.kernels.cuda", None)
    monkeypatch.setenv("NORMSWITCH_BACKEND", "cuda")
    from normswitch.registry import REGISTRY

    REGISTRY.reset(keep_backends=False)
    x = torch.randn(3, 16)
    torch.testing.assert_close(ns.rms_norm(x), ns.rms_norm(x, backend="native"))
    REGISTRY.reset(keep_backends=False)
