"""RMSNorm and the fused residual-add RMSNorm on every backend available here: the generated cases
(forced, default selection with the fast path, compiled), batch invariance, call sequences that
mix parameter layouts and dtypes (the fast path's bug class), and the in-place/``out=`` contract."""
import pytest
import torch

import normswitch as ns
from normswitch import numerics
from normswitch.ops._inputs import param, rand
from normswitch.ops.rms_norm import reference_fused_add, reference_rms_norm
from normswitch.registry import REGISTRY, BackendUnavailableError

from . import harness as h

OPS = ("rms_norm", "fused_add_rms_norm")
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
@pytest.mark.parametrize("device,backend", h.device_backends(OPS))
def test_batch_invariance(device, backend, dtype):
    m, n = h.batch_shape(backend, device)
    x, r = rand((m, n), dtype, device), rand((m, n), dtype, device, scale=1.0)
    w = param(n, dtype, device)

    def in_place(s):
        xi, ri = x[s].clone(), r[s].clone()
        ns.fused_add_rms_norm(xi, ri, w, inplace=True, backend=backend)
        return torch.cat([xi, ri], dim=1)

    h.check_batch_invariance({
        "rms_norm": lambda s: ns.rms_norm(x[s], w, backend=backend),
        "rms_norm gemma": lambda s: ns.rms_norm(x[s], w, weight_offset=1.0, backend=backend),
        "fused_add_rms_norm": lambda s: torch.cat(ns.fused_add_rms_norm(x[s], r[s], w, backend=backend), 1),
        "fused_add_rms_norm in place": in_place,
    }, m)


# -- the fast path: one call kind, then another layout of the same shapes ---------------------
def _rms_variants(device):
    x, w = rand((8, 256), BF16, device), param(256, BF16, device)
    wide = torch.empty(8, 300, dtype=BF16, device=device)
    return dict(x=x, weight=w), {
        "strided weight": dict(x=x, weight=param(256, BF16, device, "strided")),
        "expanded weight": dict(x=x, weight=param(256, BF16, device, "expanded")),
        "float32 weight": dict(x=x, weight=w.float()),
        "float64 weight": dict(x=x, weight=w.double()),
        "no weight": dict(x=x, weight=None, eps=1e-5),
        "gemma": dict(x=x, weight=w, weight_offset=1.0),
        "out=": dict(x=x, weight=w, out=torch.full_like(x, float("nan"))),
        "strided out=": dict(x=x, weight=w, out=wide.fill_(float("nan"))[:, :256]),
        "strided rows": dict(x=rand((8, 256), BF16, device, layout="strided"), weight=w),
        "expanded x": dict(x=rand((8, 256), BF16, device, layout="expanded"), weight=w),
        "3-D x": dict(x=x.view(2, 4, 256), weight=w),
    }


def _add_variants(device):
    x, r, w = rand((8, 256), BF16, device), rand((8, 256), BF16, device), param(256, BF16, device)
    return dict(x=x, residual=r, weight=w), {
        "strided residual": dict(x=x, residual=rand((8, 256), BF16, device, layout="strided"), weight=w),
        "expanded residual": dict(x=x, residual=rand((8, 256), BF16, device, layout="expanded"), weight=w),
        "float32 residual": dict(x=x, residual=r.float(), weight=w),
        "strided weight": dict(x=x, residual=r, weight=param(256, BF16, device, "strided")),
        "expanded weight": dict(x=x, residual=r, weight=param(256, BF16, device, "expanded")),
        "float32 weight": dict(x=x, residual=r, weight=w.float()),
        "gemma": dict(x=x, residual=r, weight=w, weight_offset=1.0),
        "in place": dict(x=x, residual=r, weight=w, inplace=True),
        "in place, strided rows": dict(x=rand((8, 256), BF16, device, layout="strided"),
                                       residual=rand((8, 256), BF16, device, layout="strided"),
                                       weight=w, inplace=True),
    }


@pytest.mark.parametrize("op,device,backend,dtype", h.grid(OPS, (BF16,)))
def test_fast_path_sequences(op, device, backend, dtype, monkeypatch):
    base, variants = (_rms_variants if op == "rms_norm" else _add_variants)(device)
    h.check_sequence(op, base, variants, backend, monkeypatch)


@pytest.mark.parametrize("device,backend", h.device_backends(("rms_norm",)))
def test_strided_weight_on_the_second_call(device, backend, monkeypatch):
    """The redesign's bug: a strided weight's second call (served by the fast path) was wrong."""
    h.steer(monkeypatch, "rms_norm", backend)
    x = torch.randn(8, 256, dtype=BF16, device=device)
    w = torch.randn(512, dtype=BF16, device=device)[::2]
    ref = ns.rms_norm(x, w.contiguous(), backend="native")
    before = h.fallbacks()
    ns.rms_norm(x, w)
    y = ns.rms_norm(x, w)
    assert numerics.max_error(y, ref) <= numerics.TOLERANCE[BF16]
    assert numerics.close(y, reference_rms_norm(x, w)[0], BF16)
    assert h.fallbacks() == before


# -- the kernel contract: in place, out of place, out= ----------------------------------------
@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("device,backend", h.device_backends(("fused_add_rms_norm",)))
def test_fused_add_writes_only_in_place(device, backend, dtype):
    """In place, the norm and the sum land in x and residual (the same tensors are returned, and
    the kernel-contract function returns its arguments' storage); out of place, both are left as
    they were."""
    x, r, w = rand((4, 41), dtype, device), rand((4, 41), dtype, device, shift=0.3), param(41, dtype, device)
    want_y, want_r = reference_fused_add(x, r, w)
    xi, ri = x.clone(), r.clone()
    try:
        yi, si = ns.fused_add_rms_norm(xi, ri, w, inplace=True, backend=backend)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    assert yi is xi and si is ri
    assert numerics.close(xi, want_y, dtype) and numerics.close(ri, want_r, dtype)
    xk, rk = x.clone(), r.clone()
    y, s = REGISTRY.impl("fused_add_rms_norm", backend).fn(xk, rk, w, 1e-6, 0.0, True)
    assert y.data_ptr() == xk.data_ptr() and s.data_ptr() == rk.data_ptr()
    assert torch.equal(xk, xi) and torch.equal(rk, ri)
    x0, r0 = x.clone(), r.clone()
    try:
        y, s = ns.fused_add_rms_norm(x, r, w, backend=backend)
    except BackendUnavailableError:  # in place only (sgl_kernel, vllm_c)
        return
    assert torch.equal(x, x0) and torch.equal(r, r0)
    assert numerics.close(y, want_y, dtype) and numerics.close(s, want_r, dtype)


@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("device,backend", h.device_backends(("rms_norm",)))
def test_rms_norm_out_is_written_and_returned(device, backend, dtype):
    """``out=`` (contiguous, or a view with strided rows) is written in full and returned."""
    x, w = rand((5, 72), dtype, device), param(72, dtype, device)
    want = reference_rms_norm(x, w)[0]
    for out in (torch.empty_like(x), torch.empty(5, 80, dtype=dtype, device=device)[:, :72]):
        out.fill_(float("nan"))
        try:
            got = ns.rms_norm(x, w, out=out, backend=backend)
        except BackendUnavailableError:  # strided rows are declined by some backends
            continue
        assert got is out and numerics.close(out, want, dtype)
