"""The triton backend on a CUDA GPU: a grid of M, N and dtypes (register-resident and looped rows),
the kernel contract in place, rows past 2^31 elements (int64 offsets), batch invariance,
torch.compile(fullgraph=True) and CUDA graphs. The generated cases, the default selection with
the fast path and the layout sequences run on the GPU too, in tests/ops (device cuda)."""
import pytest
import torch

import normswitch as ns
from normswitch import numerics
from normswitch.ops._inputs import param, rand
from normswitch.ops.layer_norm import reference_layer_norm
from normswitch.ops.norm_gated import reference as reference_norm_gated
from normswitch.ops.rms_norm import reference_fused_add, reference_rms_norm
from normswitch.registry import REGISTRY
from tests.ops import harness as h

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
DEV = "cuda"
B = "triton"
NAN = float("nan")
# Register-resident (1 .. 16384, odd and power-of-two) and looped (20000, 131072) row lengths.
GRID_N = (1, 17, 128, 1280, 4096, 7168, 8192, 20000, 131072)
GRID_M = (1, 7, 300)
ALL_DTYPES_N = (1280, 4096, 20000)
GRID = [(m, n, d) for n in GRID_N for d in (h.DTYPES if n in ALL_DTYPES_N else (torch.bfloat16,))
        for m in GRID_M]
grid = pytest.mark.parametrize("m,n,dtype", [pytest.param(*p, id=f"{p[0]}-{p[1]}-{h.dtype_name(p[2])}") for p in GRID])


def _layout(m):
    return "strided" if m == 7 else "contiguous"  # rows that are not packed, at M = 7


@grid
def test_rms_norm(m, n, dtype):
    x, w = rand((m, n), dtype, DEV, layout=_layout(m)), param(n, dtype, DEV)
    offset = 1.0 if m == 7 else 0.0
    h.check(h.make_case("rms_norm", "grid", x=x, weight=w, weight_offset=offset), B)
    h.check(h.make_case("rms_norm", "grid out=", x=x, weight=w, weight_offset=offset,
                        out=torch.full((m, n), NAN, dtype=dtype, device=DEV)), B)


@grid
def test_fused_add_rms_norm(m, n, dtype):
    x, r = rand((m, n), dtype, DEV, layout=_layout(m)), rand((m, n), dtype, DEV, layout=_layout(m), scale=1.0)
    w = param(n, dtype, DEV)
    for inplace in (False, True):
        h.check(h.make_case("fused_add_rms_norm", f"grid inplace={inplace}", x=x, residual=r, weight=w,
                            inplace=inplace), B)
    if m == 300:  # the kernel-contract function writes in place into its arguments' storage
        xk, rk = x.clone(), r.clone()
        y, s = REGISTRY.impl("fused_add_rms_norm", B).fn(xk, rk, w, 1e-6, 0.0, True)
        assert y.data_ptr() == xk.data_ptr() and s.data_ptr() == rk.data_ptr()
        want_y, want_r = reference_fused_add(x, r, w)
        assert numerics.close(xk, want_y, dtype) and numerics.close(rk, want_r, dtype)


@grid
def test_layer_norm(m, n, dtype):
    x = rand((m, n), dtype, DEV, layout=_layout(m), shift=1.5)
    h.check(h.make_case("layer_norm", "grid", x=x, weight=param(n, dtype, DEV),
                        bias=param(n, torch.float32, DEV)), B)


@pytest.mark.parametrize("shape", [(2, 256, 64, 64), (1, 768, 7, 9), (3, 5, 1, 1), (1, 20000, 3, 3)], ids=str)
@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
def test_layer_norm_channels_first(shape, dtype):
    c = shape[1]
    h.check(h.make_case("layer_norm_channels_first", "grid", x=rand(shape, dtype, DEV, shift=1.0),
                        weight=param(c, dtype, DEV), bias=param(c, dtype, DEV)), B)


@pytest.mark.parametrize("m,n,group", [(1, 4096, 128), (300, 4096, 1024), (7, 1280, None),
                                       (64, 8192, 64), (3, 131072, None), (5, 40000, 20000)], ids=str)
@pytest.mark.parametrize("is_rms,with_z,before", [(True, True, False), (False, True, True),
                                                  (False, False, True), (True, True, True)], ids=str)
@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
def test_norm_gated(m, n, group, is_rms, with_z, before, dtype):
    x = rand((m, n), dtype, DEV, layout=_layout(m))
    z = rand((m, n), dtype, DEV, layout=_layout(m)) if with_z else None
    h.check(h.make_case("norm_gated", "grid", x=x, weight=param(n, dtype, DEV, shift=1.0),
                        bias=None if is_rms else param(n, dtype, DEV), z=z, group_size=group,
                        norm_before_gate=before, is_rms_norm=is_rms), B)


@pytest.mark.parametrize("n", [1280, 4096, 20000], ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=h.dtype_name)
def test_batch_invariance(n, dtype):
    """Rows are bit-identical in calls of 1 .. 4096 rows, register-resident and looped."""
    m = 4096
    x, r, z = rand((m, n), dtype, DEV), rand((m, n), dtype, DEV, scale=1.0), rand((m, n), dtype, DEV)
    w, b = param(n, dtype, DEV), param(n, dtype, DEV)
    h.check_batch_invariance(h.row_op_calls(x, r, z, w, b, B), m, sizes=(1, 5, 64, 1000))


def _rows_close(y, ref, dtype):
    assert numerics.max_error(y, ref) <= numerics.TOLERANCE[dtype]


@pytest.mark.parametrize("n", [4096, 131072], ids=str)
def test_more_than_2_31_elements(n):
    """Rows whose element offsets pass 2^31 are right (int64 offsets), in every row kernel."""
    m = (1 << 31) // n + 3
    x = torch.randn(m, n, device=DEV, dtype=torch.bfloat16)
    w = torch.randn(n, device=DEV, dtype=torch.bfloat16)
    tail = slice(m - 2, m)
    y = ns.rms_norm(x, w, backend=B)
    _rows_close(y[tail], reference_rms_norm(x[tail], w)[0], torch.bfloat16)
    del y
    y = ns.layer_norm(x, w, w, backend=B)
    _rows_close(y[tail], reference_layer_norm(x[tail], w, w)[0], torch.bfloat16)
    del y
    y, _, rstd = ns.norm_gated(x, w, None, x, group_size=n // 4, is_rms_norm=True, backend=B)
    ry, _, rr = reference_norm_gated(x[tail], w, None, x[tail], 1e-6, n // 4, True, True)
    _rows_close(y[tail], ry, torch.bfloat16)
    assert numerics.max_error(rstd.view(4, m)[:, tail].reshape(-1), rr) < 1e-5
    del y, rstd
    r = torch.randn_like(x)
    want_y, want_r = reference_fused_add(x[tail], r[tail], w)
    ns.fused_add_rms_norm(x, r, w, inplace=True, backend=B)
    _rows_close(x[tail], want_y, torch.bfloat16)
    _rows_close(r[tail], want_r, torch.bfloat16)


def test_channels_first_more_than_2_31_elements():
    x = torch.randn(2, 256, (1 << 22) + 16, device=DEV, dtype=torch.bfloat16)
    w, b = torch.randn(256, device=DEV), torch.randn(256, device=DEV)
    y = ns.layer_norm_channels_first(x, w, b, backend=B)
    tail = (slice(1, 2), slice(None), slice(-40, None))
    _rows_close(y[tail], reference_layer_norm(x[tail], w, b, 1e-6, dim=1)[0], torch.bfloat16)


def every_op(x, r, w, b, z, img, wc, bc):
    """Every op and variant, forced onto the triton backend."""
    a = ns.rms_norm(x, w, 1e-6, backend=B)
    g = ns.rms_norm(x, w, 1e-6, weight_offset=1.0, backend=B)
    y, s = ns.fused_add_rms_norm(x, r, w, 1e-6, backend=B)
    ln = ns.layer_norm(x, w, b, 1e-5, backend=B)
    cf = ns.layer_norm_channels_first(img, wc, bc, 1e-6, backend=B)
    gated, mean, rstd = ns.norm_gated(x, w, b, z, 1e-6, 128, False, False, backend=B)
    rg = ns.norm_gated(x, w, None, z, 1e-6, 256, True, True, backend=B)[0]
    xi, ri = x.clone(), r.clone()
    ns.fused_add_rms_norm(xi, ri, w, inplace=True, backend=B)
    return a, g, y, s, ln, cf, gated, mean, rstd, rg, xi, ri


def _inputs():
    bf = dict(device=DEV, dtype=torch.bfloat16)
    return (torch.randn(64, 1024, **bf), torch.randn(64, 1024, **bf), torch.randn(1024, **bf),
            torch.randn(1024, device=DEV), torch.randn(64, 1024, **bf),
            torch.randn(2, 256, 16, 16, **bf), torch.randn(256, device=DEV), torch.randn(256, device=DEV))


def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    args = _inputs()
    eager = every_op(*args)
    compiled = torch.compile(every_op, fullgraph=True, dynamic=False)(*args)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=0, atol=0)


def test_cuda_graph_capture_and_replay():
    static = _inputs()
    every_op(*static)  # compile the kernels outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = every_op(*static)
    for t, fresh in zip(static, _inputs()):
        t.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    for got, want in zip(captured, every_op(*static)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
