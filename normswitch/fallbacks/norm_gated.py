"""Native gated group LayerNorm/RMSNorm: the ``layernorm_gated`` ``_layer_norm_fwd`` contract."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def norm_gated(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    eps: float,
    group_size: int,
    norm_before_gate: bool,
    is_rms_norm: bool,
    out: Optional[torch.Tensor],
) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Normalize each group of ``group_size`` columns of (M, N) ``x`` in float32.

    With ``z``: ``silu(z)`` gates the affine output when ``norm_before_gate``, else gates ``x``
    before the statistics. Returns ``(y of x.dtype (M, N), mean (ngroups*M,) float32 or None
    for RMS, rstd (ngroups*M,) float32)``, statistics group-major.
    """
    m, n = x.shape
    groups = n // group_size
    xf = x.float()
    if z is not None and not norm_before_gate:
        xf = xf * F.silu(z.float())
    xg = xf.reshape(m, groups, group_size)
    if is_rms_norm:
        mean = None
        rstd = xg.square().mean(-1, keepdim=True).add_(eps).rsqrt_()
        y = xg * rstd
    else:
        var, mean = torch.var_mean(xg, dim=-1, keepdim=True, correction=0)
        rstd = var.add_(eps).rsqrt_()
        y = (xg - mean).mul_(rstd)
    y = y.reshape(m, n).mul_(weight.float())
    if bias is not None:
        y.add_(bias.float())
    if z is not None and norm_before_gate:
        y.mul_(F.silu(z.float()))
    y = y.to(x.dtype) if out is None else out.copy_(y)

    def group_major(stat: torch.Tensor) -> torch.Tensor:
        return stat.reshape(m, groups).t().reshape(-1)

    return y, None if mean is None else group_major(mean), group_major(rstd)
