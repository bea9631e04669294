"""The CUDA backends on CPU: cheap import, availability reasons, the calls each of ``cuda``,
``sgl_kernel`` and ``vllm_c`` declines (by call features), their order in one plan (with fake
sgl-kernel and vLLM modules and a fake compiled extension), injected compile failures."""
import logging
import sys
import types

import pytest
import torch

import normswitch as ns
from normswitch.kernels import cuda, sgl_kernel, vllm_c
from normswitch.kernels.cuda import build, own
from normswitch.registry import REGISTRY, Call

BF16 = torch.bfloat16


@pytest.fixture(autouse=True)
def fresh():
    build.reset()
    yield
    build.reset()
    sgl_kernel._mod.clear()
    vllm_c._ops.clear()


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


def _fake_vllm(monkeypatch, seen):
    ops = types.SimpleNamespace(
        rms_norm=lambda out, x, w, eps: (seen.append("rms_norm"), out.fill_(8.0)),
        fused_add_rms_norm=lambda x, r, w, eps: (seen.append("fused"), x.fill_(9.0)))
    monkeypatch.setattr(vllm_c, "import_problem", lambda module, attrs: (object(), None))
    monkeypatch.setattr(vllm_c, "_namespace", lambda: ops)
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", lambda op, key: True)


@pytest.fixture
def gpu_like(monkeypatch):
    """Pretend CPU tensors are CUDA ones for the three backends, with a compiler and a fake
    extension, and that the cpu device's order is theirs."""
    for mod in (cuda, sgl_kernel, vllm_c):
        monkeypatch.setattr(mod, "device_problem", lambda device_type: None)
    monkeypatch.setattr(build, "toolchain_problem", lambda: None)
    ext = FakeExt()
    monkeypatch.setattr(build, "load", lambda: ext)
    ns.reset()
    return ext


def _order(monkeypatch, tmp_path, *names):
    path = tmp_path / "order.yaml"
    path.write_text(f"devices: {{cpu: {{backends: [{', '.join(names)}]}}}}\n")
    monkeypatch.setenv("NORMSWITCH_CONFIG", str(path))
    ns.reset()


# -- import and availability -------------------------------------------------------------------
def test_import_is_cheap_and_reports_why_unavailable():
    assert {"rms_norm", "norm_gated", "layer_norm_channels_first"} <= {
        op for op, impls in REGISTRY.impls.items() if "cuda" in impls}
    assert "CUDA devices only" in cuda.availability("cpu")
    assert "ROCm" in cuda.availability("rocm")
    if torch.version.cuda is None:
        assert "CPU-only" in cuda.availability("cuda")
        assert "CPU-only" in sgl_kernel.availability("cuda") and "CPU-only" in vllm_c.availability("cuda")
    assert build.EXTENSION.module is None  # nothing compiled at import or availability time
    assert REGISTRY.impl("layer_norm", "sgl_kernel") is None and REGISTRY.impl("norm_gated", "vllm_c") is None


def test_engines_kernels_not_importable(monkeypatch):
    monkeypatch.setattr(sgl_kernel, "device_problem", lambda device_type: None)
    monkeypatch.setattr(vllm_c, "device_problem", lambda device_type: None)
    monkeypatch.setitem(sys.modules, "sgl_kernel", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "vllm._C", None)
    monkeypatch.setitem(sys.modules, "vllm._C_stable_libtorch", None)
    assert "sgl_kernel not importable" in sgl_kernel.availability("cuda")
    reason = vllm_c.availability("cuda")
    assert "vllm._C not importable" in reason and "vllm._C_stable_libtorch not importable" in reason


def test_vllm_026_kernels_from_the_stable_libtorch_library(monkeypatch):
    """vLLM 0.26 for CUDA has no ``vllm._C``: its norms come with ``vllm._C_stable_libtorch``."""
    imported = []

    def import_problem(module, attrs):
        imported.append(module)
        return (None, f"{module} not importable") if module == "vllm._C" else (object(), None)

    monkeypatch.setattr(vllm_c, "device_problem", lambda device_type: None)
    monkeypatch.setattr(vllm_c, "import_problem", import_problem)
    monkeypatch.setattr(vllm_c, "_namespace", lambda: types.SimpleNamespace(
        rms_norm=object(), fused_add_rms_norm=object()))
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", lambda op, key: True)
    assert vllm_c.availability("cuda") is None
    assert imported == ["vllm._C", "vllm._C_stable_libtorch"]


def test_vllm_cpu_build_is_unavailable(monkeypatch):
    monkeypatch.setattr(vllm_c, "device_problem", lambda device_type: None)
    monkeypatch.setattr(vllm_c, "import_problem", lambda module, attrs: (object(), None))
    monkeypatch.setattr(vllm_c, "_namespace", lambda: types.SimpleNamespace(
        rms_norm=None, fused_add_rms_norm=None))
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", lambda op, key: False)
    assert "no CUDA kernel" in vllm_c.availability("cuda")


# -- what each backend declines ------------------------------------------------------------------
def _call(op="rms_norm", dtype=BF16, *features):
    return Call(op, "cuda", dtype, 4096, frozenset(("weight",) + features))


def test_declines_by_call_features():
    assert sgl_kernel.supports(_call()) is None and vllm_c.supports(_call()) is None
    assert sgl_kernel.supports(_call("rms_norm", BF16, "offset", "gemma")) is None
    assert "offset" in vllm_c.supports(_call("rms_norm", BF16, "offset", "gemma"))
    assert "offset" in sgl_kernel.supports(_call("rms_norm", BF16, "offset"))
    assert "float16/bfloat16" in sgl_kernel.supports(_call("rms_norm", torch.float32))
    for backend in (sgl_kernel, vllm_c):
        assert "x's dtype" in backend.supports(_call("rms_norm", BF16, "mixed"))
        assert "packed rows" in backend.supports(_call("rms_norm", BF16, "strided"))
        assert "in place only" in backend.supports(_call("fused_add_rms_norm", BF16))
        assert backend.supports(_call("fused_add_rms_norm", BF16, "inplace")) is None
        assert "x's dtype" in backend.supports(_call("fused_add_rms_norm", BF16, "inplace", "residual_mixed"))
        assert "weight" in backend.supports(Call("rms_norm", "cuda", BF16, 64))
    assert "float64" in cuda.supports(Call("rms_norm", "cuda", torch.float64, 8))


def test_one_plan_orders_the_three(monkeypatch, tmp_path, gpu_like):
    """Each call kind goes to the first of sgl_kernel, vllm_c, cuda that supports it."""
    calls, seen = [], []
    monkeypatch.setitem(sys.modules, "sgl_kernel", _fake_sgl(calls))
    _fake_vllm(monkeypatch, seen)
    _order(monkeypatch, tmp_path, "sgl_kernel", "vllm_c", "cuda", "native")
    x, w = torch.randn(4, 64).to(BF16), torch.randn(64).to(BF16)
    assert ns.rms_norm(x, w).eq(1.0).all() and calls == ["rmsnorm"]
    assert ns.rms_norm(x, w, weight_offset=1.0).eq(2.0).all() and calls[-1] == "gemma_rmsnorm"
    assert ns.rms_norm(x.float(), w.float()).eq(8.0).all() and seen == ["rms_norm"]  # fp32: vllm_c
    assert ns.rms_norm(x, w, weight_offset=0.5).eq(7.0).all()  # neither: cuda
    assert ns.rms_norm(x, w.float()).eq(7.0).all()
    assert ns.rms_norm(torch.randn(4, 80).to(BF16)[:, :64], w).eq(7.0).all()
    assert ns.rms_norm(x, None).eq(7.0).all()
    assert len(gpu_like.calls) == 4 and len(calls) == 2
    r = torch.randn(4, 64).to(BF16)
    xi = x.clone()
    ns.fused_add_rms_norm(xi, r.clone(), w, inplace=True)
    assert xi.eq(3.0).all() and calls[-1] == "fused_add_rmsnorm"
    y, s = ns.fused_add_rms_norm(x, r, w)  # out of place: neither engine kernel, cuda
    assert y.eq(7.0).all() and s.eq(5.0).all()
    assert ns.layer_norm(x, w, w).eq(7.0).all()  # the engines' kernels have no LayerNorm


def test_own_wrappers_pass_the_contract(gpu_like):
    x = torch.randn(6, 40)
    y, mean, rstd = own.norm_gated(x, torch.randn(40), None, torch.randn(6, 40).half(), 1e-6, 10,
                                   False, False, None)
    assert y.eq(7.0).all() and mean.shape == rstd.shape == (24,)
    assert own.norm_gated(x, torch.randn(40), None, None, 1e-6, 40, True, True, None)[1] is None
    assert own.layer_norm_channels_first(torch.randn(2, 3, 5), torch.randn(3),
                                         torch.randn(3).double(), 1e-6).eq(7.0).all()
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
    monkeypatch.setattr(cuda, "device_problem", lambda device_type: None)
    x = torch.randn(2, 8)
    for _ in range(2):
        with pytest.raises(build.CudaBuildError, match="injected failure"):
            own.rms_norm(x, None, 1e-6, 0.0, None)
    assert len(failing_compile) == 1  # not retried
    assert "compile failed" in cuda.availability("cuda")


def test_registry_falls_through_on_compile_failure(monkeypatch, tmp_path, failing_compile, caplog):
    """The cuda backend asked first on CPU tensors: its compile fails, the next one serves."""
    monkeypatch.setenv("NORMSWITCH_CUDA_CACHE", str(tmp_path))
    monkeypatch.setattr(cuda, "device_problem", lambda device_type: None)
    monkeypatch.setenv("NORMSWITCH_BACKEND", "cuda")
    ns.reset()
    x, w = torch.randn(3, 16), torch.randn(16)
    with caplog.at_level(logging.WARNING, logger="normswitch"):
        y = ns.rms_norm(x, w)
    torch.testing.assert_close(y, ns.rms_norm(x, w, backend="native"))
    assert any("compile failed" in r.getMessage() or "injected" in r.getMessage()
               for r in caplog.records)


def test_registry_falls_through_when_a_backend_module_cannot_import(monkeypatch):
    import subprocess

    code = ("import sys; sys.modules['normswitch.kernels.sgl_kernel'] = None\n"
            "import os, torch, normswitch as ns\n"
            "from normswitch.registry import REGISTRY\n"
            "x = torch.randn(3, 16)\n"
            "os.environ['NORMSWITCH_BACKEND'] = 'sgl_kernel'; ns.reset()\n"
            "torch.testing.assert_close(ns.rms_norm(x), ns.rms_norm(x, backend='native'))\n"
            "print(REGISTRY.availability('rms_norm', 'sgl_kernel', 'cpu'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "cannot import normswitch.kernels.sgl_kernel" in out.stdout
