"""LayerNorm (float32 math) and its channels-first form on every backend available here: the
generated cases (forced, default selection with the fast path, compiled), batch invariance, call
sequences that mix parameter layouts and dtypes (the fast path's bug class), and ``out=``."""
import pytest
import torch

import normswitch as ns
from normswitch import numerics
from normswitch.ops._inputs import param, rand
from normswitch.ops.layer_norm import reference_channels_first, reference_layer_norm
from normswitch.registry import BackendUnavailableError

from . import harness as h

OPS = ("layer_norm", "layer_norm_channels_first")
BF16 = torch.bfloat16


@pytest.mark.parametrize("op,device,backend,dtype", h.grid(OPS))
def test_cases_forced(op, device, backend, dtype):
    h.run_forced(op, device, backend, dtype)


@pytest.mark.parametrize("op,device,backend,dtype", h.grid(OPS))
def test_cases_default_selection(op, device, backend, dtype, monkeypatch):
    h.run_default(op, device, backend, dtype, monkeypatch)


@pytest.mark.parametrize("op,device,backend,dtype", h.grid(OPS, (BF16,)))
def test_cases_compiled(op, device, backend, dtype):
    h.run_compiled(op, device, backend, dtype)


@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("device,backend", h.device_backends(("layer_norm",)))
def test_batch_invariance(device, backend, dtype):
    """Each row's result is the same whatever the other rows (channels-first: see below)."""
    m, n = h.batch_shape(backend, device)
    x = rand((m, n), dtype, device, shift=1.5)
    w, b = param(n, dtype, device), param(n, torch.float32, device)
    h.check_batch_invariance({
        "layer_norm": lambda s: ns.layer_norm(x[s], w, b, backend=backend),
        "layer_norm without affine": lambda s: ns.layer_norm(x[s], backend=backend),
    }, m)


@pytest.mark.parametrize("c", [96, 1280])
@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("device,backend", h.device_backends(("layer_norm_channels_first",)))
def test_channels_first_position_and_batch_invariance(device, backend, dtype, c):
    """A position's result is bitwise the same whatever the number of positions and images
    around it: one image of the batch alone, and runs of positions cut out of it (1280 channels
    take the split kernels on triton, 96 the one-pass kernel)."""
    x = rand((3, c, 45), dtype, device, shift=1.0)
    w, b = param(c, dtype, device), param(c, torch.float32, device)
    try:
        full = ns.layer_norm_channels_first(x, w, b, backend=backend)
    except BackendUnavailableError:
        pytest.skip(f"{backend} declines this call")
    assert torch.equal(ns.layer_norm_channels_first(x[1:2], w, b, backend=backend), full[1:2])
    for start, stop in ((7, 8), (3, 19), (0, 45 - 16)):
        part = x[:, :, start:stop].contiguous()
        got = ns.layer_norm_channels_first(part, w, b, backend=backend)
        assert torch.equal(got, full[:, :, start:stop]), f"positions {start}:{stop} differ"


# -- the fast path: one call kind, then another layout of the same shapes ---------------------
def _ln_variants(device):
    x = rand((8, 256), BF16, device, shift=1.5)
    w, b = param(256, BF16, device), param(256, BF16, device)
    wide = torch.empty(8, 300, dtype=BF16, device=device)
    return dict(x=x, weight=w, bias=b), {
        "strided weight": dict(x=x, weight=param(256, BF16, device, "strided"), bias=b),
        "strided bias": dict(x=x, weight=w, bias=param(256, BF16, device, "strided")),
        "expanded parameters": dict(x=x, weight=param(256, BF16, device, "expanded"),
                                    bias=param(256, BF16, device, "expanded")),
        "float32 bias": dict(x=x, weight=w, bias=b.float()),
        "float32 weight": dict(x=x, weight=w.float(), bias=b),
        "weight only": dict(x=x, weight=w),
        "no affine": dict(x=x, eps=1e-6),
        "out=": dict(x=x, weight=w, bias=b, out=torch.full_like(x, float("nan"))),
        "strided out=": dict(x=x, weight=w, bias=b, out=wide.fill_(float("nan"))[:, :256]),
        "strided rows": dict(x=rand((8, 256), BF16, device, layout="strided"), weight=w, bias=b),
        "expanded x": dict(x=rand((8, 256), BF16, device, layout="expanded"), weight=w, bias=b),
        "3-D x": dict(x=x.view(2, 4, 256), weight=w, bias=b),
    }


def _cf_variants(device):
    x = rand((2, 32, 4, 4), BF16, device, shift=1.0)
    w, b = param(32, BF16, device), param(32, BF16, device)
    return dict(x=x, weight=w, bias=b), {
        "strided weight": dict(x=x, weight=param(32, BF16, device, "strided"), bias=b),
        "expanded bias": dict(x=x, weight=w, bias=param(32, BF16, device, "expanded")),
        "float32 parameters": dict(x=x, weight=w.float(), bias=b.float()),
        "channels-last x": dict(x=x.contiguous(memory_format=torch.channels_last), weight=w, bias=b),
        "3-D x": dict(x=x.view(2, 32, 16), weight=w, bias=b),
    }


@pytest.mark.parametrize("op,device,backend,dtype", h.grid(OPS, (BF16,)))
def test_fast_path_sequences(op, device, backend, dtype, monkeypatch):
    base, variants = (_ln_variants if op == "layer_norm" else _cf_variants)(device)
    h.check_sequence(op, base, variants, backend, monkeypatch)


# -- the contract: out=, contiguous channels-first results ------------------------------------
@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("device,backend", h.device_backends(("layer_norm",)))
def test_layer_norm_out_is_written_and_returned(device, backend, dtype):
    """``out=`` (contiguous, or a view with strided rows) is written in full and returned."""
    x = rand((5, 72), dtype, device, shift=1.5)
    w, b = param(72, dtype, device), param(72, torch.float32, device)
    want = reference_layer_norm(x, w, b)[0]
    for out in (torch.empty_like(x), torch.empty(5, 80, dtype=dtype, device=device)[:, :72]):
        out.fill_(float("nan"))
        try:
            got = ns.layer_norm(x, w, b, out=out, backend=backend)
        except BackendUnavailableError:
            continue
        assert got is out and numerics.close(out, want, dtype)


@pytest.mark.parametrize("device,backend", h.device_backends(("layer_norm_channels_first",)))
def test_channels_first_result_is_contiguous(device, backend):
    """Whatever x's memory format, the result is a contiguous tensor of x's shape."""
    x = rand((2, 24, 5, 3), BF16, device, shift=1.0).contiguous(memory_format=torch.channels_last)
    w, b = param(24, BF16, device), param(24, BF16, device)
    y = ns.layer_norm_channels_first(x, w, b, backend=backend)
    assert y.shape == x.shape and y.is_contiguous()
    assert numerics.close(y, reference_channels_first(x, w, b)[0], BF16)
