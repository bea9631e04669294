"""The CUDA backends on a GPU. ``cuda`` (normswitch's own kernels): shapes beyond the generated
cases, every launch path (kernel contract, poisoned outputs), M*N > 2^31, batch invariance at
large M, other streams, CUDA-graph capture/replay and torch.compile. ``sgl_kernel`` and
``vllm_c`` (where installed): what they decline is served by the next backend.

The generated cases of every op (forced, default selection with the fast path, compiled) and
the layout sequences run for every backend available on the GPU in tests/ops (device cuda); the
selection logic of the three backends is tested on CPU in test_cuda_selection.py.
"""
import pytest
import torch

import normswitch as ns
from normswitch.kernels.cuda import build, own
from normswitch.ops._inputs import param, rand
from normswitch.ops.layer_norm import reference_layer_norm
from normswitch.ops.rms_norm import SHAPES, reference_fused_add, reference_rms_norm
from normswitch.registry import REGISTRY, BackendUnavailableError
from tests.ops import harness as h

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
DEV = "cuda"
B = "cuda"
BF16 = torch.bfloat16
dtypes = pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)


# -- shapes beyond the generated cases ---------------------------------------------------------
@dtypes
@pytest.mark.parametrize("shape", SHAPES + ((6, 130),), ids=str)
def test_fused_add_gemma(dtype, shape):
    layout = "strided" if shape == (6, 130) else "contiguous"
    x, r = rand(shape, dtype, DEV, layout=layout), rand(shape, dtype, DEV, layout=layout, scale=1.0)
    for inplace in (False, True):
        h.check(h.make_case("fused_add_rms_norm", f"gemma inplace={inplace}", x=x, residual=r,
                            weight=param(shape[-1], dtype, DEV), weight_offset=1.0, inplace=inplace), B)


@dtypes
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 768, 4, 4), (2, 1, 3, 3), (0, 4, 2, 2),
                                   (1, 256, 64, 64), (2, 33, 5, 7), (2, 33, 9, 11),
                                   (1, 4096, 1, 1), (1, 9000, 2, 2), (3, 64, 16, 16)], ids=str)
def test_layer_norm_channels_first(dtype, shape):
    c = shape[1]
    h.check(h.make_case("layer_norm_channels_first", "launch configs", x=rand(shape, dtype, DEV, shift=1.0),
                        weight=param(c, dtype, DEV), bias=param(c, dtype, DEV)), B)


@pytest.mark.parametrize("m,n,layout,group", [(0, 64, "contiguous", None), (5, 1, "contiguous", None),
                                               (6, 130, "strided", None), (1024, 128, "contiguous", 128),
                                               (64, 4096, "contiguous", 1024), (3, 2048, "strided", 512)])
def test_norm_gated_shapes(m, n, layout, group):
    x, z = rand((m, n), BF16, DEV, layout=layout), rand((m, n), BF16, DEV, layout=layout)
    w, b = param(n, BF16, DEV, shift=1.0), param(n, BF16, DEV)
    h.check(h.make_case("norm_gated", "layer norm", x=x, weight=w, bias=b, z=z, group_size=group), B)
    h.check(h.make_case("norm_gated", "rms, gate first", x=x, weight=w, z=z, group_size=group,
                        norm_before_gate=False, is_rms_norm=True), B)


@dtypes
def test_batch_invariance_at_large_m(dtype):
    """The last row of 3000 is the same computed alone (launch plans depend on N only)."""
    m, n = 3000, 4096
    x, r, z = rand((m, n), dtype, DEV), rand((m, n), dtype, DEV, scale=1.0), rand((m, n), dtype, DEV)
    w, b = param(n, dtype, DEV), param(n, dtype, DEV)
    h.check_batch_invariance(h.row_op_calls(x, r, z, w, b, B), m, row=m - 1, sizes=(1, 5, 64, 1000))


# -- every launch path of the own kernels (kernel contract, poisoned outputs) -------------------
def _rand(m, n, dtype, stride=None, shift=0.3):
    return (torch.randn(m, stride or n, device=DEV) * 2 + shift).to(dtype)[:, :n]


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
        h.assert_close(o, reference_rms_norm(x, w, 1e-6, 0.0)[0], dtype, f"rms N={n} w={wd}")
        o = _poisoned(x)
        own.layer_norm(x, w, b, 1e-5, o)
        h.assert_close(o, reference_layer_norm(x, w, b, 1e-5)[0], dtype, f"ln N={n} w={wd}")


@pytest.mark.parametrize("n", [4096, 4097, 40000, 96])
@pytest.mark.parametrize("res_dtype", [BF16, torch.float32], ids=h.dtype_name)
def test_paths_fused_add_mixed_residual(n, res_dtype):
    x = _rand(5, n, BF16).contiguous()
    r = _rand(5, n, res_dtype, shift=0.0).contiguous()
    w = torch.randn(n, device=DEV).to(BF16)
    ry, rr = reference_fused_add(x, r, w, 1e-6, 0.0)
    y, s = own.fused_add_rms_norm(x, r, w, 1e-6, 0.0, False)
    assert s.dtype == res_dtype
    h.assert_close(y, ry, BF16, "y")
    h.assert_close(s, rr, res_dtype, "residual")
    y2, s2 = own.fused_add_rms_norm(x, r, w, 1e-6, 0.0, True)
    assert y2 is x and s2 is r
    h.assert_close(x, ry, BF16, "y in place")
    h.assert_close(r, rr, res_dtype, "residual in place")


def test_plans_depend_on_n_only():
    ext = build.load()
    for n in (64, 1280, 4096, 7168, 8192, 40000):
        x1, x2 = _rand(1, n, BF16), _rand(5000, n, BF16)
        assert ext.row_norm_plan(x1, n) == ext.row_norm_plan(x2, n)
    assert ext.row_norm_plan(_rand(2, 4096, BF16), 4096)[0] == 8  # 16-byte accesses
    assert ext.row_norm_plan(_rand(2, 4097, BF16), 4097)[0] == 1  # misaligned rows


# -- M*N > 2^31 ---------------------------------------------------------------------------------
def test_more_than_2_31_elements():
    n = 4096
    m = (1 << 31) // n + 3
    x = torch.empty(m, n, device=DEV, dtype=BF16).normal_()
    w = torch.randn(n, device=DEV).to(BF16)
    tail = slice(m - 4, m)
    y = own.rms_norm(x, w, 1e-6, 0.0, None)
    h.assert_close(y[tail], reference_rms_norm(x[tail], w, 1e-6, 0.0)[0], BF16, "rms tail")
    h.assert_close(y[:2], reference_rms_norm(x[:2], w, 1e-6, 0.0)[0], BF16, "rms head")
    del y
    r = torch.empty_like(x).normal_()
    ry, rr = reference_fused_add(x[tail], r[tail], w, 1e-6, 0.0)
    own.fused_add_rms_norm(x, r, w, 1e-6, 0.0, True)
    h.assert_close(x[tail], ry, BF16, "fused tail")
    h.assert_close(r[tail], rr, BF16, "fused residual tail")
    del x, r
    c = torch.empty(1, 8, (1 << 31) // 8 + 4096, device=DEV, dtype=BF16).normal_()
    cw, cb = torch.randn(8, device=DEV), torch.randn(8, device=DEV)
    cy = own.layer_norm_channels_first(c, cw, cb, 1e-6)
    h.assert_close(cy[..., -64:], reference_layer_norm(c[..., -64:], cw, cb, 1e-6, dim=1)[0], BF16,
                   "channels_first tail")


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
    x, r, z = (_rand(m, n, BF16) for _ in range(3))
    w, b = torch.randn(n, device=DEV), torch.randn(n, device=DEV)
    c = _rand(2 * n, 48, BF16).reshape(2, n, 48)
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
    torch._dynamo.reset()
    args = _inputs()
    compiled = torch.compile(_all_ops, fullgraph=True, dynamic=False)
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


# -- sgl_kernel and vllm_c: what they serve, what they leave to the next backend -----------------
@pytest.mark.parametrize("backend", ["sgl_kernel", "vllm_c"])
def test_engine_backend_serves_its_calls_and_declines_the_rest(backend, monkeypatch):
    reason = REGISTRY.availability("rms_norm", backend, DEV)
    if reason is not None:
        pytest.skip(reason)
    x, r, w = _rand(33, 4096, BF16), _rand(33, 4096, BF16), torch.randn(4096, device=DEV).to(BF16)
    served = [h.make_case("rms_norm", "packed rows", x=x, weight=w),
              h.make_case("fused_add_rms_norm", "in place", x=x, residual=r, weight=w, inplace=True)]
    declined = [h.make_case("rms_norm", "float32 weight", x=x, weight=w.float()),
                h.make_case("rms_norm", "strided rows", x=_rand(33, 4096, BF16, stride=4200), weight=w),
                h.make_case("fused_add_rms_norm", "out of place", x=x, residual=r, weight=w)]
    for case in served:
        h.check(case, backend)
    for case in declined:
        with pytest.raises(BackendUnavailableError, match="cannot serve: unsupported"):
            case.run(backend)
    for op in ("rms_norm", "fused_add_rms_norm"):
        h.steer(monkeypatch, op, backend)
    for case in served + declined:  # the default selection with the backend first
        before = h.fallbacks()
        h.check(case)
        h.assert_no_fallback(before, backend, [case])
