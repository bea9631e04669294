"""The ``cpu`` backend (C++ kernels) against the float64 reference, like every backend: each op it
serves, every dtype and awkward shape, batch invariance, int64 offsets, bad arguments, and the
fallback to native when it cannot be built."""
import itertools

import pytest
import torch

import normswitch as ns
from normswitch import reference
from normswitch.kernels import cpu
from tests import numerics as nm

DEV = "cpu"
pytestmark = pytest.mark.skipif(cpu.EXTENSION.problem() is not None, reason=f"{cpu.EXTENSION.problem()}")
shapes = pytest.mark.parametrize("shape,strided", nm.SHAPES, ids=lambda v: str(v))
dtypes = pytest.mark.parametrize("dtype", nm.DTYPES, ids=str)


@dtypes
@shapes
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_rms_norm(dtype, shape, strided, offset):
    nm.check_rms_norm("cpu", DEV, shape, dtype, strided, offset)


@dtypes
@pytest.mark.parametrize("n", [1, 7, 16, 33, 4099])
def test_rms_norm_sizes_and_no_weight(dtype, n):
    nm.check_rms_norm("cpu", DEV, (5, n), dtype, with_weight=n % 2 == 0)


@dtypes
@shapes
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_fused_add_rms_norm(dtype, shape, strided, offset):
    nm.check_fused_add_rms_norm("cpu", DEV, shape, dtype, strided, offset)


@dtypes
@pytest.mark.parametrize(
    "is_rms,with_bias,with_z,before,quarter",
    list(itertools.product([False, True], [False, True], [False, True], [True, False], [False, True])),
)
def test_norm_gated_all_variants(dtype, is_rms, with_bias, with_z, before, quarter):
    n = 200
    nm.check_norm_gated("cpu", DEV, 9, n, dtype, is_rms, with_bias, with_z, before, n // 4 if quarter else None)


@pytest.mark.parametrize("m,n,strided,group", [(0, 64, False, None), (5, 1, False, None), (6, 130, True, 65),
                                               (3, 4096, False, 64)])
def test_norm_gated_shapes(m, n, strided, group):
    nm.check_norm_gated("cpu", DEV, m, n, torch.bfloat16, False, True, True, True, group, strided)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
def test_batch_invariance(dtype):
    nm.check_batch_invariance("cpu", DEV, dtype, ops=cpu.BACKEND.impls)


def test_mixed_parameter_dtypes():
    """float32/float64 weights with bfloat16 x, and a float32 residual, match the reference."""
    x = nm.rand((7, 300), torch.bfloat16, DEV)
    for w in (torch.randn(300), torch.randn(300, dtype=torch.float64)):
        nm.assert_close(ns.rms_norm(x, w, backend="cpu"), reference.rms_norm(x, w, 1e-6), torch.bfloat16)
    r = nm.rand((7, 300), torch.float32, DEV)
    y, s = ns.fused_add_rms_norm(x, r, torch.randn(300), backend="cpu")
    assert y.dtype == torch.bfloat16 and s.dtype == torch.float32


def test_offsets_beyond_int32():
    """Rows more than 2^31 elements apart (a strided view of a sparse, untouched allocation)."""
    n = 1024
    base = torch.empty(2**31 + 4 * n, dtype=torch.bfloat16)
    x = base.as_strided((3, n), (2**30, 1))
    x.copy_(nm.rand((3, n), torch.bfloat16, DEV))
    w = torch.randn(n).to(torch.bfloat16)
    nm.assert_close(ns.rms_norm(x, w, backend="cpu"), reference.rms_norm(x, w, 1e-6), torch.bfloat16)
    out = base.as_strided((3, n), (2**30, 1), 2 * n)
    ns.rms_norm(x, w, out=out, backend="cpu")
    nm.assert_close(out, reference.rms_norm(x, w, 1e-6), torch.bfloat16)


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


def test_build_failure_falls_back_to_native(monkeypatch, caplog):
    """A compile that fails makes the registry fall back to native: one warning, same numbers."""
    ns.reset()
    monkeypatch.setattr(cpu.EXTENSION, "module", None)
    monkeypatch.setattr(cpu.EXTENSION, "failure", None)
    monkeypatch.setattr(cpu.EXTENSION, "key", lambda: "broken-for-test")
    monkeypatch.setattr(cpu.EXTENSION, "flags", lambda: {"extra_cflags": ["-DNORMSWITCH_NO_SUCH_FLAG", "-x", "nonsense"]})
    x, w = nm.rand((3, 64), torch.float32, DEV), torch.randn(64)
    with caplog.at_level("WARNING", logger="normswitch"):
        y = ns.rms_norm(x, w)
        ns.rms_norm(x, w)
    nm.assert_close(y, reference.rms_norm(x, w, 1e-6), torch.float32)
    falls = [r for r in caplog.records if "falls back to 'native'" in r.getMessage()]
    assert len(falls) == 1 and "compile failed" in falls[0].getMessage()
    ns.reset()
