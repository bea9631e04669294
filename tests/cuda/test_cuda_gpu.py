"""The cuda backend on a GPU: the core numerical suite, every launch path of the own kernels,
M*N > 2^31, batch invariance, other streams, CUDA-graph capture/replay and torch.compile.

Only the own kernels can run on the test GPU (sgl-kernel and vLLM cannot be installed
there); their selection logic is tested on CPU in test_cuda_selection.py.
"""
import itertools

import pytest
import torch

import normswitch as ns
from normswitch import reference
from normswitch.kernels import cuda
from normswitch.kernels.cuda import build, own
from tests import numerics as nm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
DEV = "cuda"
B = "cuda"
dtypes = pytest.mark.parametrize("dtype", nm.DTYPES, ids=str)
shapes = pytest.mark.parametrize("shape,strided", nm.SHAPES, ids=str)


@pytest.fixture(autouse=True)
def only_own(monkeypatch):
    monkeypatch.setenv("NORMSWITCH_CUDA_PROVIDERS", "own")
    cuda.reset()


# -- the core numerical suite ------------------------------------------------------------------
@dtypes
@shapes
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_rms_norm(dtype, shape, strided, offset):
    nm.check_rms_norm(B, DEV, shape, dtype, strided, offset)


@dtypes
def test_rms_norm_without_weight(dtype):
    nm.check_rms_norm(B, DEV, (4, 77), dtype, with_weight=False)


@dtypes
@shapes
def test_fused_add_rms_norm(dtype, shape, strided):
    nm.check_fused_add_rms_norm(B, DEV, shape, dtype, strided)
    nm.check_fused_add_rms_norm(B, DEV, shape, dtype, strided, offset=1.0)


@dtypes
@shapes
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(dtype, shape, strided, affine):
    nm.check_layer_norm(B, DEV, shape, dtype, strided, affine)


@dtypes
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 768, 4, 4), (2, 1, 3, 3), (0, 4, 2, 2),
                                   (1, 256, 64, 64), (2, 33, 5, 7), (2, 33, 9, 11),
                                   (1, 4096, 1, 1), (1, 9000, 2, 2), (3, 64, 16, 16)], ids=str)
def test_layer_norm_channels_first(dtype, shape):
    nm.check_layer_norm_channels_first(B, DEV, shape, dtype)


@dtypes
@pytest.mark.parametrize(
    "is_rms,with_bias,with_z,before,quarter",
    list(itertools.product([False, True], [False, True], [False, True], [True, False], [False, True])),
)
def test_norm_gated_all_variants(dtype, is_rms, with_bias, with_z, before, quarter):
    n = 200
    nm.check_norm_gated(B, DEV, 9, n, dtype, is_rms, with_bias, with_z, before,
                        n // 4 if quarter else None)


@pytest.mark.parametrize("m,n,strided,group", [(0, 64, False, None), (5, 1, False, None),
                                                (6, 130, True, None), (1024, 128, False, 128),
                                                (64, 4096, False, 1024), (3, 2048, True, 512)])
def test_norm_gated_shapes(m, n, strided, group):
    nm.check_norm_gated(B, DEV, m, n, torch.bfloat16, False, True, True, True, group, strided)
    nm.check_norm_gated(B, DEV, m, n, torch.bfloat16, True, False, True, False, group, strided)


@dtypes
def test_batch_invariance(dtype):
    nm.check_batch_invariance(B, DEV, dtype)
    nm.check_batch_invariance(B, DEV, dtype, n=4096, batch=3000, row=2999)


# -- every launch path of the own kernels (kernel contract, poisoned outputs) -------------------
def _rand(m, n, dtype, stride=None, shift=0.3):
    width = stride or n
    return (torch.randn(m, width, device=DEV) * 2 + shift).to(dtype)[:, :n]


def _poisoned(x):
    return torch.full(x.shape, float("nan"), dtype=x.dtype, device=DEV)


PATHS = [  # (N, row stride): 16-byte cached, scalar, vector + scalar tail, re-read, tiny rows
    (4096, None), (1280, None), (7168, None), (8192, None), (4097, None), (4095, 4096),
    (40000, None), (20001, None), (64, None), (3, None), (16384, None), (12289, None)]


@dtypes
@pytest.mark.parametrize("n,stride", PATHS, ids=str)
def test_paths_rms_and_layer_norm(dtype, n, stride):
    x = _rand(7, n, dtype, stride)
    for wd in (torch.float32, dtype):
        w = torch.randn(n, device=DEV).to(wd)
        b = torch.randn(n, device=DEV).to(wd)
        o = _poisoned(x)
        assert own.rms_norm(x, w, 1e-6, 0.0, o) is o
        nm.assert_close(o, reference.rms_norm(x, w, 1e-6, 0.0), dtype, f"rms N={n} w={wd}")
        o = _poisoned(x)
        own.layer_norm(x, w, b, 1e-5, o)
        nm.assert_close(o, reference.layer_norm(x, w, b, 1e-5), dtype, f"ln N={n} w={wd}")


@pytest.mark.parametrize("n", [4096, 4097, 40000, 96])
@pytest.mark.parametrize("res_dtype", [torch.bfloat16, torch.float32], ids=str)
def test_paths_fused_add_mixed_residual(n, res_dtype):
    x = _rand(5, n, torch.bfloat16).contiguous()
    r = _rand(5, n, res_dtype, shift=0.0).contiguous()
    w = torch.randn(n, device=DEV).to(torch.bfloat16)
    ry, rr = reference.fused_add_rms_norm(x, r, w, 1e-6, 0.0)
    y, s = own.fused_add_rms_norm(x, r, w, 1e-6, 0.0, False)
    assert s.dtype == res_dtype
    nm.assert_close(y, ry, torch.bfloat16, "y")
    nm.assert_close(s, rr, res_dtype, "residual")
    y2, s2 = own.fused_add_rms_norm(x, r, w, 1e-6, 0.0, True)
    assert y2 is x and s2 is r
    nm.assert_close(x, ry, torch.bfloat16, "y in place")
    nm.assert_close(r, rr, res_dtype, "residual in place")


def test_plans_depend_on_n_only():
    ext = build.load()
    for n in (64, 1280, 4096, 7168, 8192, 40000):
        x1, x2 = _rand(1, n, torch.bfloat16), _rand(5000, n, torch.bfloat16)
        assert ext.row_norm_plan(x1, n) == ext.row_norm_plan(x2, n)
    assert ext.row_norm_plan(_rand(2, 4096, torch.bfloat16), 4096)[0] == 8  # 16-byte accesses
    assert ext.row_norm_plan(_rand(2, 4097, torch.bfloat16), 4097)[0] == 1  # misaligned rows


# -- M*N > 2^31 ---------------------------------------------------------------------------------
def test_more_than_2_31_elements():
    n = 4096
    m = (1 << 31) // n + 3
    x = torch.empty(m, n, device=DEV, dtype=torch.bfloat16).normal_()
    w = torch.randn(n, device=DEV).to(torch.bfloat16)
    tail = slice(m - 4, m)
    y = own.rms_norm(x, w, 1e-6, 0.0, None)
    nm.assert_close(y[tail], reference.rms_norm(x[tail], w, 1e-6, 0.0), torch.bfloat16, "rms tail")
    nm.assert_close(y[:2], reference.rms_norm(x[:2], w, 1e-6, 0.0), torch.bfloat16, "rms head")
    del y
    r = torch.empty_like(x).normal_()
    ry, rr = reference.fused_add_rms_norm(x[tail], r[tail], w, 1e-6, 0.0)
    own.fused_add_rms_norm(x, r, w, 1e-6, 0.0, True)
    nm.assert_close(x[tail], ry, torch.bfloat16, "fused tail")
    nm.assert_close(r[tail], rr, torch.bfloat16, "fused residual tail")
    del x, r
    c = torch.empty(1, 8, (1 << 31) // 8 + 4096, device=DEV, dtype=torch.bfloat16).normal_()
    cw, cb = torch.randn(8, device=DEV), torch.randn(8, device=DEV)
    cy = own.layer_norm_channels_first(c, cw, cb, 1e-6)
    nm.assert_close(cy[..., -64:], reference.layer_norm(c[..., -64:], cw, cb, 1e-6, dim=1),
                    torch.bfloat16, "channels_first tail")


# -- streams, CUDA graphs, torch.compile ---------------------------------------------------------
def _all_ops(x, r, z, w, b, c):
    return [
        ns.rms_norm(x, w, backend=B),
        ns.rms_norm(x, w, weight_offset=1.0, backend=B),
        ns.fused_add_rms_norm(x, r, w, backend=B)[0],
        ns.layer_norm(x, w, b, backend=B),
        ns.norm_gated(x, w, b, z, group_size=x.shape[-1] // 4, backend=B)[0],
        ns.norm_gated(x, w, None, z, norm_before_gate=False, is_rms_norm=True, backend=B)[0],
        ns.layer_norm_channels_first(c, w, b, backend=B),
    ]


def _inputs(n=1024, m=33):
    x, r, z = (_rand(m, n, torch.bfloat16) for _ in range(3))
    w, b = torch.randn(n, device=DEV), torch.randn(n, device=DEV)
    c = _rand(2 * n, 48, torch.bfloat16).reshape(2, n, 48)
    return x, r, z, w, b, c


def test_side_stream():
    args = _inputs()
    expected = _all_ops(*args)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        got = _all_ops(*args)
    torch.cuda.current_stream().wait_stream(s)
    for e, g in zip(expected, got):
        assert torch.equal(e, g)


def test_cuda_graph_capture_and_replay():
    args = _inputs()
    _all_ops(*args)  # build and warm up outside the capture
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        _all_ops(*args)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = _all_ops(*args)
    for t in args:
        t.copy_(torch.randn_like(t, dtype=torch.float32).to(t.dtype))
    graph.replay()
    torch.cuda.synchronize()
    for e, g in zip(_all_ops(*args), outs):
        assert torch.equal(e, g)


def test_torch_compile_fullgraph():
    args = _inputs()
    compiled = torch.compile(_all_ops, fullgraph=True)
    for e, g in zip(_all_ops(*args), compiled(*args)):
        assert torch.equal(e, g)


def test_kernel_argument_errors_are_python_exceptions():
    """Called directly, the bindings raise ValueError/TypeError (built without iostreams)."""
    ext = build.load()
    x = torch.randn(2, 4, 8, device=DEV)
    w = torch.randn(4, device=DEV)
    with pytest.raises(ValueError, match="weight must be a contiguous CUDA vector of size 4"):
        ext.channels_first(x, torch.randn(3, device=DEV), w, torch.empty_like(x), 1e-6)
    with pytest.raises(TypeError, match="unsupported dtype"):
        ext.row_norm_plan(torch.zeros(2, 8, device=DEV, dtype=torch.int32), 8)
