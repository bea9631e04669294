"""The ``cpu`` backend (C++ kernels) beyond the generated cases of tests/ops (which run it like
every backend: forced, default selection with the fast path, compiled, batch invariance, layout
sequences): hidden sizes around the vector widths, grouped shapes, parameters of other dtypes,
int64 offsets, the kernels' own argument checks, and the fallback to native when it cannot be built.
The RMSNorm tests run on both row-kernel paths: the AVX-512 one (where this CPU has it) and the
portable one."""
import pytest
import torch

import normswitch as ns
from normswitch.kernels import cpu
from normswitch.ops._inputs import param, rand
from normswitch.ops.rms_norm import reference_fused_add, reference_rms_norm
from normswitch.registry import BackendUnavailableError
from tests.ops import harness as h

DEV = "cpu"
B = "cpu"
pytestmark = pytest.mark.skipif(cpu.EXTENSION.problem() is not None, reason=f"{cpu.EXTENSION.problem()}")


@pytest.fixture(params=["auto", "portable"])
def path(request):
    """The RMSNorm row kernels under test: "auto" (AVX-512 where the CPU has it) or "portable"."""
    ext = cpu.EXTENSION.load()
    ext.set_portable(request.param == "portable")
    if request.param == "auto" and ext.kernel_path() == "portable":
        ext.set_portable(False)
        pytest.skip("this CPU has no AVX-512: only the portable kernels exist")
    yield ext.kernel_path()
    ext.set_portable(False)


@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("n", [1, 7, 16, 33, 4099])
def test_rms_norm_vector_tails(dtype, n, path):
    """Row lengths below, at and past one vector, with and without a weight."""
    x = rand((5, n), dtype, DEV)
    weight = param(n, dtype, DEV) if n % 2 == 0 else None
    h.check(h.make_case("rms_norm", f"N={n}", x=x, weight=weight), B)
    h.check(h.make_case("fused_add_rms_norm", f"N={n}", x=x, residual=rand((5, n), dtype, DEV),
                        weight=param(n, dtype, DEV), weight_offset=1.0), B)


@pytest.mark.parametrize("m,n,layout,group", [(0, 64, "contiguous", None), (5, 1, "contiguous", None),
                                               (6, 130, "strided", 65), (3, 4096, "contiguous", 64)])
def test_norm_gated_shapes(m, n, layout, group):
    x, z = rand((m, n), torch.bfloat16, DEV, layout=layout), rand((m, n), torch.bfloat16, DEV, layout=layout)
    h.check(h.make_case("norm_gated", "shapes", x=x, weight=param(n, torch.bfloat16, DEV, shift=1.0),
                        bias=param(n, torch.bfloat16, DEV), z=z, group_size=group), B)


def test_mixed_parameter_dtypes(path):
    """float32/float64 weights with bfloat16 x match the reference; a float32 residual is
    declined (the kernels add in x's dtype) and served by native in the default selection."""
    x = rand((7, 300), torch.bfloat16, DEV)
    for w in (torch.randn(300), torch.randn(300, dtype=torch.float64), torch.randn(300).half()):
        h.check(h.make_case("rms_norm", f"{w.dtype} weight", x=x, weight=w), B)
        h.check(h.make_case("rms_norm", f"{w.dtype} weight, gemma", x=x, weight=w, weight_offset=1.0), B)
        h.check(h.make_case("fused_add_rms_norm", f"{w.dtype} weight", x=x, residual=rand((7, 300), torch.bfloat16, DEV),
                            weight=w, inplace=True), B)
    case = h.make_case("fused_add_rms_norm", "float32 residual", x=x, residual=rand((7, 300), torch.float32, DEV),
                       weight=torch.randn(300))
    with pytest.raises(BackendUnavailableError, match="residual of another dtype"):
        case.run(B)
    y, s = h.check(case)
    assert y.dtype == torch.bfloat16 and s.dtype == torch.float32


def test_offsets_beyond_int32(path):
    """Rows more than 2^31 elements apart (a strided view of a sparse, untouched allocation)."""
    n = 1024
    base = torch.empty(2**31 + 6 * n, dtype=torch.bfloat16)
    x = base.as_strided((3, n), (2**30, 1))
    x.copy_(rand((3, n), torch.bfloat16, DEV))
    w = torch.randn(n).to(torch.bfloat16)
    want = reference_rms_norm(x, w)[0]
    h.assert_close(ns.rms_norm(x, w, backend=B), want, torch.bfloat16, "rms_norm")
    out = base.as_strided((3, n), (2**30, 1), 2 * n)
    ns.rms_norm(x, w, out=out, backend=B)
    h.assert_close(out, want, torch.bfloat16, "rms_norm out=")
    res = base.as_strided((3, n), (2**30, 1), 4 * n)
    res.copy_(rand((3, n), torch.bfloat16, DEV))
    want_y, want_r = reference_fused_add(x, res, w)
    y, r = ns.fused_add_rms_norm(x, res, w, backend=B)
    h.assert_close(y, want_y, torch.bfloat16, "fused_add_rms_norm y")
    h.assert_close(r, want_r, torch.bfloat16, "fused_add_rms_norm residual")


@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
def test_paths_agree_and_rows_are_batch_invariant(dtype):
    """Both paths give the reference's answer; on each, a row's result is the same whether it is
    normalized alone or among 300 others (row splitting across threads changes nothing)."""
    ext = cpu.EXTENSION.load()
    x, res, w = rand((300, 1030), dtype, DEV), rand((300, 1030), dtype, DEV), param(1030, dtype, DEV)
    try:
        for portable in (True, False):
            ext.set_portable(portable)
            y = ext.rms_norm(x, w, 1e-6, 0.0, None)
            assert torch.equal(ext.rms_norm(x[17:18], w, 1e-6, 0.0, None), y[17:18])
            h.assert_close(y, reference_rms_norm(x, w)[0], dtype, f"rms_norm {ext.kernel_path()}")
            ya, ra = ext.fused_add_rms_norm(x, res, w, 1e-6, 0.0, False)
            y1, r1 = ext.fused_add_rms_norm(x[5:6], res[5:6], w, 1e-6, 0.0, False)
            assert torch.equal(y1, ya[5:6]) and torch.equal(r1, ra[5:6])
    finally:
        ext.set_portable(False)


def test_kernel_rejects_bad_arguments_itself():
    """Called directly (outside normswitch.ops), the kernels still check what they index."""
    ext = cpu.EXTENSION.load()
    x = torch.randn(4, 64)
    with pytest.raises(ValueError, match="weight"):
        ext.rms_norm(x, torch.randn(63), 1e-6, 0.0, None)
    with pytest.raises(TypeError, match="x"):
        ext.rms_norm(x.double(), None, 1e-6, 0.0, None)
    with pytest.raises(TypeError, match="weight"):
        ext.rms_norm(x, torch.ones(64, dtype=torch.int32), 1e-6, 0.0, None)
    with pytest.raises(ValueError, match=r"residual: expected shape \(4, 64\), got \(4, 63\)"):
        ext.fused_add_rms_norm(x, torch.randn(4, 63), torch.randn(64), 1e-6, 0.0, False)
    with pytest.raises(ValueError, match="group_size"):
        ext.norm_gated(x, torch.randn(64), None, None, 1e-6, 48, True, False, None)
    # the METH_FASTCALL bindings (raw_calls.cpp) check their arguments' Python types
    with pytest.raises(TypeError, match="x: expected a tensor"):
        ext.rms_norm(x.tolist(), None, 1e-6, 0.0, None)
    with pytest.raises(TypeError, match="eps: expected a float"):
        ext.rms_norm(x, None, "1e-6", 0.0, None)
    with pytest.raises(TypeError, match="5 positional arguments"):
        ext.rms_norm(x, None, 1e-6)
    with pytest.raises(TypeError, match="weight: expected a tensor, got NoneType"):
        ext.fused_add_rms_norm(x, x.clone(), None, 1e-6, 0.0, False)
    r, out = torch.randn(4, 64), torch.empty(4, 64)
    assert ext.rms_norm(x, None, 1e-6, 0.0, out) is out
    got = ext.fused_add_rms_norm(x, r, torch.randn(64), 1e-6, 0.0, True)
    assert got[0] is x and got[1] is r


def test_build_failure_falls_back_to_native(monkeypatch, caplog):
    """A compile that fails makes the registry fall back to native: one warning, same numbers."""
    ns.reset()
    monkeypatch.setattr(cpu.EXTENSION, "module", None)
    monkeypatch.setattr(cpu.EXTENSION, "failure", None)
    monkeypatch.setattr(cpu.EXTENSION, "key", lambda: "broken-for-test")
    monkeypatch.setattr(cpu.EXTENSION, "flags",
                        lambda: {"extra_cflags": ["-DNORMSWITCH_NO_SUCH_FLAG", "-x", "nonsense"]})
    x, w = rand((3, 64), torch.float32, DEV), torch.randn(64)
    with caplog.at_level("WARNING", logger="normswitch"):
        y = ns.rms_norm(x, w)
        ns.rms_norm(x, w)
    h.assert_close(y, reference_rms_norm(x, w)[0], torch.float32, "rms_norm")
    falls = [r for r in caplog.records if "falls back to 'native'" in r.getMessage()]
    assert len(falls) == 1 and "compile failed" in falls[0].getMessage()
    ns.reset()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=h.dtype_name)
def test_large_outputs_streamed(dtype, path):
    """An output of 16 MB or more is written around the caches (non-temporal stores on the AVX-512
    path); rows of 4100 elements start on and off a vector boundary, so both kinds of store run."""
    n = 4100
    m = (16 << 20) // (n * torch.empty((), dtype=dtype).element_size()) + 1
    x, w = rand((m, n), dtype, DEV), param(n, dtype, DEV)
    h.assert_close(ns.rms_norm(x, w, backend=B), reference_rms_norm(x, w)[0], dtype, "rms_norm")
    out = torch.empty_like(x)
    h.assert_close(ns.rms_norm(x, None, out=out, backend=B), reference_rms_norm(x)[0], dtype, "rms_norm out=")
