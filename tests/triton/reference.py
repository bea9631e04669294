"""Float64 references for the kernel contract (``normswitch.backend``), and the error measure.

Each reference mirrors the op's rounding points (design.md): an intermediate that the contract
rounds to a storage dtype is rounded here too, everything else is float64.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

F64 = torch.float64


def rms_norm(x, weight, eps, weight_offset=0.0, out_dtype=None):
    """``round(x * rsqrt(mean(x^2) + eps)) * (weight + offset)`` in float64 (not rounded)."""
    xd = x.to(F64)
    xh = xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + eps)
    xh = xh.to(out_dtype or x.dtype).to(F64)
    return xh if weight is None else xh * (weight.to(F64) + weight_offset)


def fused_add_rms_norm(x, residual, weight, eps, weight_offset=0.0):
    """``r = round(x + residual)``; returns ``(rms_norm(r) in float64, r)``."""
    r = (x.to(F64) + residual.to(F64)).to(residual.dtype)
    return rms_norm(r, weight, eps, weight_offset, x.dtype), r


def layer_norm(x, weight, bias, eps):
    """LayerNorm in float64."""
    xd = x.to(F64)
    y = (xd - xd.mean(-1, keepdim=True)) * torch.rsqrt(xd.var(-1, unbiased=False, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(F64)
    return y if bias is None else y + bias.to(F64)


def layer_norm_channels_first(x, weight, bias, eps):
    """LayerNorm over dim 1 of (B, C, S), float64."""
    return layer_norm(x.transpose(1, 2), weight, bias, eps).transpose(1, 2)


def norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm):
    """The FLA ``_layer_norm_fwd`` contract in float64: ``(y, mean|None, rstd)`` group-major."""
    M, N = x.shape
    xd = x.to(F64).view(M, N // group_size, group_size)
    zd = None if z is None else F.silu(z.to(F64)).view_as(xd)
    if zd is not None and not norm_before_gate:
        xd = xd * zd
    mean = None if is_rms_norm else xd.mean(-1, keepdim=True)
    xc = xd if is_rms_norm else xd - mean
    rstd = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps)
    y = (xc * rstd).view(M, N) * weight.to(F64)
    if bias is not None:
        y = y + bias.to(F64)
    if zd is not None and norm_before_gate:
        y = y * zd.view(M, N)
    stat = (lambda t: t.squeeze(-1).t().reshape(-1))
    return y, None if mean is None else stat(mean), stat(rstd)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``||out - ref|| / ||ref||`` in float64; NaN (never passes) when out has a non-finite value."""
    o = out.to(F64).cpu()
    r = ref.to(F64).cpu()
    if not torch.isfinite(o).all():
        return float("nan")
    return float((o - r).norm() / r.norm().clamp_min(1e-30))


def tol(dtype: torch.dtype) -> float:
    """Relative error bound for a result stored in ``dtype`` (one rounding plus float32 math)."""
    return {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: Optional[torch.dtype] = None) -> None:
    """Fail unless ``rel_err(out, ref)`` is within the bound for ``dtype`` (default out.dtype)."""
    err = rel_err(out, ref)
    bound = tol(dtype or out.dtype)
    assert err <= bound, f"relative error {err:.3g} > {bound:.1g}"
