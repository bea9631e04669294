"""The core numerical checks, parametrized by backend and device, shared by every backend's tests.

Each ``check_*`` runs one op through ``normswitch.ops`` with ``backend=`` forced and compares it
with the float64 reference in ``normswitch.reference`` (relative error; NaN never passes).
"""
from __future__ import annotations

import torch

import normswitch as ns
from normswitch import reference

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (shape of x, whether rows are non-contiguous): N not a power of two, N = 1, 3-D, strided rows, M = 0.
SHAPES = (((5, 1000), False), ((3, 1), False), ((2, 3, 96), False), ((6, 130), True), ((0, 64), False))


def rand(shape, dtype, device, strided=False, scale=2.0, shift=0.3) -> torch.Tensor:
    """Random normal data (never zeros); with ``strided`` a view whose rows are not contiguous."""
    if strided:
        wide = torch.randn(*shape[:-1], shape[-1] + 17, device=device) * scale + shift
        return wide.to(dtype)[..., : shape[-1]]
    return (torch.randn(*shape, device=device) * scale + shift).to(dtype)


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    err = reference.max_error(out, ref)
    tol = reference.TOLERANCE[dtype]
    assert err <= tol, f"{what}: max relative error {err:.3g} > {tol:.3g} ({dtype})"


def check_rms_norm(backend, device, shape, dtype, strided=False, offset=0.0, with_weight=True):
    x = rand(shape, dtype, device, strided)
    w = torch.randn(shape[-1], device=device).to(dtype) if with_weight else None
    y = ns.rms_norm(x, w, 1e-6, weight_offset=offset, backend=backend)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, reference.rms_norm(x, w, 1e-6, offset), dtype, "rms_norm")
    out = torch.empty_like(x)
    assert ns.rms_norm(x, w, 1e-6, weight_offset=offset, out=out, backend=backend) is out
    assert_close(out, reference.rms_norm(x, w, 1e-6, offset), dtype, "rms_norm out=")


def check_fused_add_rms_norm(backend, device, shape, dtype, strided=False, offset=0.0):
    x = rand(shape, dtype, device, strided)
    r = rand(shape, dtype, device, strided, scale=1.0)
    w = torch.randn(shape[-1], device=device).to(dtype)
    ref_y, ref_r = reference.fused_add_rms_norm(x, r, w, 1e-6, offset)
    y, s = ns.fused_add_rms_norm(x, r, w, 1e-6, weight_offset=offset, backend=backend)
    assert_close(y, ref_y, dtype, "fused_add_rms_norm y")
    assert_close(s, ref_r, dtype, "fused_add_rms_norm residual")
    xi, ri = x.clone(), r.clone()
    yi, si = ns.fused_add_rms_norm(xi, ri, w, 1e-6, weight_offset=offset, inplace=True, backend=backend)
    assert yi is xi and si is ri
    assert_close(xi, ref_y, dtype, "fused_add_rms_norm in place: x")
    assert_close(ri, ref_r, dtype, "fused_add_rms_norm in place: residual")


def check_layer_norm(backend, device, shape, dtype, strided=False, affine=True):
    x = rand(shape, dtype, device, strided, shift=1.5)
    w = torch.randn(shape[-1], device=device).to(dtype) if affine else None
    b = torch.randn(shape[-1], device=device) if affine else None  # float32 bias with 16-bit x
    y = ns.layer_norm(x, w, b, 1e-5, backend=backend)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, reference.layer_norm(x, w, b, 1e-5), dtype, "layer_norm")


def check_layer_norm_channels_first(backend, device, shape, dtype):
    x = rand(shape, dtype, device, shift=1.0)
    w = torch.randn(shape[1], device=device).to(dtype)
    b = torch.randn(shape[1], device=device).to(dtype)
    y = ns.layer_norm_channels_first(x, w, b, 1e-6, backend=backend)
    assert y.shape == x.shape and y.dtype == dtype and y.is_contiguous()
    assert_close(y, reference.layer_norm(x, w, b, 1e-6, dim=1), dtype, "layer_norm_channels_first")


def check_norm_gated(backend, device, m, n, dtype, is_rms, with_bias, with_z, before, group, strided=False):
    x = rand((m, n), dtype, device, strided)
    w = torch.randn(n, device=device).to(dtype)
    b = torch.randn(n, device=device).to(dtype) if with_bias else None
    z = rand((m, n), dtype, device, strided) if with_z else None
    y, mean, rstd = ns.norm_gated(x, w, b, z, 1e-6, group, before, is_rms, backend=backend)
    ry, rmean, rrstd = reference.norm_gated(x, w, b, z, 1e-6, group, before, is_rms)
    what = f"norm_gated rms={is_rms} bias={with_bias} z={with_z} before={before} group={group}"
    assert_close(y, ry, dtype, what)
    assert_close(rstd, rrstd, torch.float32, what + " rstd")
    assert rstd.dtype == torch.float32 and rstd.shape == (m * (n // (group or n)),)
    if is_rms:
        assert mean is None
    else:
        assert mean.dtype == torch.float32
        assert_close(mean, rmean, torch.float32, what + " mean")


def check_batch_invariance(backend, device, dtype, n=1280, batch=1000, row=37, ops=None):
    """Row ``row`` is bit-identical computed alone or inside a batch of ``batch`` rows, per op
    (every op, or those named in ``ops``)."""
    x = rand((batch, n), dtype, device)
    r = rand((batch, n), dtype, device, scale=1.0)
    z = rand((batch, n), dtype, device)
    w = torch.randn(n, device=device).to(dtype)
    b = torch.randn(n, device=device).to(dtype)
    one = slice(row, row + 1)
    runs = {
        "rms_norm": lambda s: ns.rms_norm(x[s], w, backend=backend),
        "fused_add_rms_norm": lambda s: ns.fused_add_rms_norm(x[s], r[s], w, backend=backend)[0],
        "layer_norm": lambda s: ns.layer_norm(x[s], w, b, backend=backend),
        "norm_gated": lambda s: ns.norm_gated(x[s], w, b, z[s], group_size=n // 4, backend=backend)[0],
        "norm_gated_rms": lambda s: ns.norm_gated(x[s], w, None, z[s], is_rms_norm=True, backend=backend)[0],
    }
    for name, run in runs.items():
        if ops is not None and name.removesuffix("_rms") not in ops:
            continue
        full = run(slice(None))[row]
        alone = run(one)[0]
        assert torch.equal(full, alone), f"{name}: row {row} differs alone vs in a batch of {batch}"
