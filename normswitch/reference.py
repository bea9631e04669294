"""Float64 references of every op (the spec's rounding points kept) and the comparison used by
``normswitch verify`` and the tests. Slow on purpose: clarity over speed."""
from __future__ import annotations

from typing import Optional

import torch

Tensor = torch.Tensor

TOLERANCE = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
"""Relative tolerance per output dtype (about two units in the last place)."""


def _d(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.double()


def rms_norm(x: Tensor, weight: Optional[Tensor], eps: float, weight_offset: float = 0.0,
             out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """HF order: normalized value rounded to the output dtype, then times ``weight + offset``."""
    dt = out_dtype or x.dtype
    xd = x.double()
    xh = (xd * torch.rsqrt(xd.square().mean(-1, keepdim=True) + eps)).to(dt).double()
    return xh if weight is None else xh * (weight.double() + weight_offset)


def fused_add_rms_norm(x: Tensor, residual: Tensor, weight: Tensor, eps: float,
                       weight_offset: float = 0.0) -> tuple[Tensor, Tensor]:
    r = (x.double() + residual.double()).to(residual.dtype)
    return rms_norm(r, weight, eps, weight_offset, x.dtype), r.double()


def layer_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float, dim: int = -1) -> Tensor:
    xd = x.double()
    centered = xd - xd.mean(dim, keepdim=True)
    y = centered * torch.rsqrt(centered.square().mean(dim, keepdim=True) + eps)
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    if weight is not None:
        y = y * weight.double().view(shape)
    if bias is not None:
        y = y + bias.double().view(shape)
    return y


def norm_gated(x: Tensor, weight: Tensor, bias: Optional[Tensor], z: Optional[Tensor], eps: float,
               group_size: Optional[int], norm_before_gate: bool, is_rms_norm: bool
               ) -> tuple[Tensor, Optional[Tensor], Tensor]:
    m, n = x.shape
    g = group_size or n
    xd = x.double()
    gate = None if z is None else torch.nn.functional.silu(z.double())
    if gate is not None and not norm_before_gate:
        xd = xd * gate
    xg = xd.view(m, n // g, g)
    mean = None if is_rms_norm else xg.mean(-1, keepdim=True)
    centered = xg if mean is None else xg - mean
    rstd = torch.rsqrt(centered.square().mean(-1, keepdim=True) + eps)
    y = (centered * rstd).view(m, n) * weight.double()
    if bias is not None:
        y = y + bias.double()
    if gate is not None and norm_before_gate:
        y = y * gate
    stats = [None if s is None else s.view(m, n // g).t().reshape(-1) for s in (mean, rstd)]
    return y, stats[0], stats[1]


def max_error(out: Tensor, ref: Tensor) -> float:
    """Largest ``|out - ref| / (1 + |ref|)``; ``inf`` if any NaN/inf appears or shapes differ."""
    if out.shape != ref.shape:
        return float("inf")
    if out.numel() == 0:
        return 0.0
    o = out.double()
    if not torch.isfinite(o).all():
        return float("inf")
    return ((o - ref).abs() / (1.0 + ref.abs())).max().item()


def close(out: Tensor, ref: Tensor, dtype: torch.dtype) -> bool:
    """Within ``TOLERANCE[dtype]`` of the float64 reference; NaN never passes."""
    return max_error(out, ref) <= TOLERANCE[dtype]
