"""Native gated group LayerNorm/RMSNorm: the ``layernorm_gated`` ``_layer_norm_fwd`` contract."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _silu_fp32(z: torch.Tensor) -> torch.Tensor:
    """``silu(z)`` rounded to float32, computed in float64.

    ATen's vectorized ``exp`` and its scalar loop for the last elements of a buffer differ in
    the last bit, so a float32 silu of a row would depend on where the row falls in the batch;
    in float64 that difference is far below float32's rounding (a row's result stays the same
    in any batch, short of a tie at one float32 rounding in about 2^28 elements).
    """
    return F.silu(z.double(), inplace=True).float()


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
    gate = None if z is None else _silu_fp32(z)
    xf = x.float().contiguous()
    owned = xf is not x  # a fresh float32 buffer that may be updated in place
    if gate is not None and not norm_before_gate:
        xf = xf.mul_(gate) if owned else xf * gate
        owned = True
    xg = xf.view(m, groups, group_size)
    if is_rms_norm:
        mean = None
        rstd = torch.linalg.vector_norm(xg, dim=-1, keepdim=True).square_().div_(group_size).add_(eps).rsqrt_()
        y = xg.mul_(rstd) if owned else xg * rstd
    else:
        # The mean as a sum (var_mean's running update gives NaN for a group holding +-Inf).
        mean = xg.mean(-1, keepdim=True)
        y = xg.sub_(mean) if owned else xg - mean
        rstd = y.square().mean(-1, keepdim=True).add_(eps).rsqrt_()
        y = y.mul_(rstd)
    y = y.view(m, n).mul_(weight.float())
    if bias is not None:
        y.add_(bias.float())
    if gate is not None and norm_before_gate:
        y.mul_(gate)
    y = y.to(x.dtype) if out is None else out.copy_(y)

    def group_major(stat: torch.Tensor) -> torch.Tensor:
        return stat.view(m, groups).t().reshape(-1)

    return y, None if mean is None else group_major(mean), group_major(rstd)
