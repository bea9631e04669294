"""The ``cpu`` backend's LayerNorm kernels (``csrc/layer_norm.cpp``) beyond the generated cases of
tests/ops: row lengths and spatial sizes around the vector block, parameters of other dtypes,
batch invariance (a row, or a position of the channels-first form, gives the same bits whatever
else is in the call, vector lanes or scalar tail), strided rows and int64 offsets, all against the
float64 reference."""
import pytest
import torch

import normswitch as ns
from normswitch.kernels import cpu
from normswitch.ops._inputs import param, rand
from normswitch.ops.layer_norm import reference_layer_norm
from tests.ops import harness as h

DEV = "cpu"
B = "cpu"
pytestmark = pytest.mark.skipif(cpu.EXTENSION.problem() is not None, reason=f"{cpu.EXTENSION.problem()}")


@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("n", [1, 7, 31, 32, 33, 4099])
def test_layer_norm_vector_tails(dtype, n):
    x = rand((5, n), dtype, DEV, shift=1.0)
    h.check(h.make_case("layer_norm", f"N={n}", x=x, weight=param(n, dtype, DEV), bias=param(n, dtype, DEV)), B)
    h.check(h.make_case("layer_norm", f"N={n} no affine", x=x, weight=None, bias=None), B)
    h.check(h.make_case("layer_norm", f"N={n} float64 weight", x=x, weight=torch.randn(n, dtype=torch.float64),
                        bias=None), B)


@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("c,spatial", [(1, (5, 7)), (3, (31,)), (16, (4, 8)), (256, (33,)), (7, (10, 10))])
def test_channels_first_blocks_and_tails(dtype, c, spatial):
    """S below, at and past the 32 positions of a vector block, C from 1 up."""
    x = rand((2, c, *spatial), dtype, DEV, shift=1.0)
    h.check(h.make_case("layer_norm_channels_first", f"C={c} S={spatial}", x=x, weight=param(c, dtype, DEV),
                        bias=param(c, torch.float32, DEV)), B)


def test_layer_norm_rows_are_batch_invariant():
    x = rand((40, 1000), torch.bfloat16, DEV)
    w, b = param(1000, torch.bfloat16, DEV), param(1000, torch.bfloat16, DEV)
    y = ns.layer_norm(x, w, b, backend=B)
    for rows in (slice(17, 18), slice(0, 1), slice(3, 39)):
        assert torch.equal(ns.layer_norm(x[rows], w, b, backend=B), y[rows])


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=h.dtype_name)
def test_channels_first_positions_are_batch_invariant(dtype):
    """A position's result is the same in a full vector block or in the scalar tail (S = 100 has
    three blocks and four tail positions; S = 33 one block and one tail), and per image."""
    x = rand((3, 24, 100), dtype, DEV, shift=2.0)
    w, b = param(24, dtype, DEV), param(24, dtype, DEV)
    y = ns.layer_norm_channels_first(x, w, b, backend=B)
    for s in (1, 31, 33, 70, 99):
        assert torch.equal(ns.layer_norm_channels_first(x[:, :, :s].contiguous(), w, b, backend=B), y[:, :, :s])
    tail = x[:, :, 96:].contiguous()  # tail positions of S = 100 as the first block-less positions
    assert torch.equal(ns.layer_norm_channels_first(tail, w, b, backend=B), y[:, :, 96:])
    assert torch.equal(ns.layer_norm_channels_first(x[1:2], w, b, backend=B), y[1:2])


def test_channels_first_channels_last_input():
    """A channels-last (non-contiguous) image: the op hands the kernel a contiguous copy."""
    x = rand((2, 64, 9, 11), torch.bfloat16, DEV).to(memory_format=torch.channels_last)
    w, b = param(64, torch.bfloat16, DEV), param(64, torch.bfloat16, DEV)
    y = ns.layer_norm_channels_first(x, w, b, backend=B)
    assert y.is_contiguous() and torch.equal(y, ns.layer_norm_channels_first(x.contiguous(), w, b, backend=B))


def test_layer_norm_strided_rows_and_offsets_beyond_int32():
    """Rows more than 2^31 elements apart (a strided view of a sparse, untouched allocation), and
    into an ``out`` laid out the same way."""
    n = 1024
    base = torch.empty(2**31 + 6 * n, dtype=torch.bfloat16)
    x = base.as_strided((3, n), (2**30, 1))
    x.copy_(rand((3, n), torch.bfloat16, DEV))
    w, b = torch.randn(n).to(torch.bfloat16), torch.randn(n)
    want = reference_layer_norm(x, w, b, 1e-5)[0]
    h.assert_close(ns.layer_norm(x, w, b, 1e-5, backend=B), want, torch.bfloat16, "layer_norm")
    out = base.as_strided((3, n), (2**30, 1), 2 * n)
    assert ns.layer_norm(x, w, b, 1e-5, out=out, backend=B) is out
    h.assert_close(out, want, torch.bfloat16, "layer_norm out=")


def test_layer_norm_kernels_reject_bad_arguments_themselves():
    ext = cpu.EXTENSION.load()
    x = torch.randn(4, 64)
    with pytest.raises(ValueError, match="bias"):
        ext.layer_norm(x, None, torch.randn(63), 1e-5, None)
    with pytest.raises(TypeError, match="x"):
        ext.layer_norm(x.double(), None, None, 1e-5, None)
    with pytest.raises(ValueError, match=r"\(B, C, S\)"):
        ext.layer_norm_channels_first(x, torch.randn(4), torch.randn(4), 1e-6)
    with pytest.raises(ValueError, match="weight"):
        ext.layer_norm_channels_first(x.view(1, 4, 64), torch.randn(5), torch.randn(4), 1e-6)
