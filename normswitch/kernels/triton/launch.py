"""Launch configuration and kernel-contract entry points for the last-dimension norms.

Every function here takes inputs already shaped by ``normswitch.ops`` (its kernel contracts):
2-D ``(M, N)`` tensors with unit column stride, 1-D contiguous ``weight``/``bias``.

The launch configuration depends only on the row length ``G`` (never on ``M``), so a row's result
is bitwise the same whatever the batch size (batch invariance).
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

import triton

from .rounding import RTNE_BY_HAND
from .rownorm import _rownorm_fused_kernel, _rownorm_looped_kernel

MAX_FUSED_N = 16384
"""Rows up to this length stay in registers; longer rows take the looped kernel."""
LOOP_BLOCK_N = 4096
"""Chunk length of the looped kernel."""
PARAMS_FIRST_MAX_PROGRAMS = 1024
"""Grids up to this many programs load weight/bias before the reduction (see rownorm.py)."""
ROWS_TARGET = 2048
"""Elements per program aimed at for rows shorter than 1024 (several rows per program). Longer
rows take one program each (two groups of 1024 per program were slower), except rows padded to
2048 lanes (N = 1280), two per program: fewer idle lanes per program at large M, at a small cost
at decode sizes (benchmarks/results/NOTES-triton.md)."""
MAX_WARPS_8K = 8
"""Warps for rows of up to 8192 lanes: 8 rather than 16 keeps more rows in flight per
multiprocessor at prefill sizes (benchmarks/results/NOTES-triton.md)."""


@functools.lru_cache(maxsize=None)
def row_config(G: int, max_fused: int, loop_block: int) -> tuple[bool, int, int, int]:
    """``(looped, BLOCK_M, BLOCK_N, num_warps)`` for rows of ``G`` elements."""
    if G > max_fused:
        block_n = min(loop_block, triton.next_power_of_2(G))
        return True, 1, block_n, max(1, min(16, block_n // 256))
    block_n = triton.next_power_of_2(max(G, 1))
    if block_n < 1024:
        block_m = max(1, ROWS_TARGET // block_n)
    else:
        block_m = 2 if block_n == 2048 and G < block_n else 1
    elems = block_n if block_n >= 1024 else block_m * block_n
    num_warps = max(4 if block_n >= 1024 else 1, min(16, elems // 512))
    if block_n <= 8192:
        num_warps = min(num_warps, MAX_WARPS_8K)
    return False, block_m, block_n, num_warps


def launch_rownorm(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_groups: int = 1,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    residual: Optional[torch.Tensor] = None,
    residual_out: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    gate_first: bool = False,
    is_rms: bool,
    round_xhat: bool = False,
    eps: float,
    weight_offset: float = 0.0,
    mean: Optional[torch.Tensor] = None,
    rstd: Optional[torch.Tensor] = None,
    config: Optional[tuple[bool, int, int, int]] = None,
) -> None:
    """Normalize each of the ``n_groups`` groups of every row of ``x`` (M, N) into ``y``.

    ``config`` overrides :func:`row_config` (``(looped, BLOCK_M, BLOCK_N, num_warps)``, for tuning).
    """
    M, N = x.shape
    if M == 0 or N == 0:
        return
    G = N // n_groups
    looped, block_m, block_n, num_warps = config or row_config(G, MAX_FUSED_N, LOOP_BLOCK_N)
    kernel = _rownorm_looped_kernel if looped else _rownorm_fused_kernel
    rows = M * n_groups
    grid = (triton.cdiv(rows, block_m),)
    kernel[grid](
        x, residual if residual is not None else x, residual_out if residual_out is not None else y,
        z if z is not None else x, weight if weight is not None else x,
        bias if bias is not None else x, y,
        mean if mean is not None else y, rstd if rstd is not None else y,
        M, n_groups, G,
        x.stride(0),
        residual.stride(0) if residual is not None else 0,
        residual_out.stride(0) if residual_out is not None else 0,
        z.stride(0) if z is not None else 0,
        y.stride(0),
        eps, weight_offset,
        IS_RMS=is_rms, HAS_RES=residual is not None, HAS_Z=z is not None, GATE_FIRST=gate_first,
        HAS_W=weight is not None, HAS_B=bias is not None, ROUND_XHAT=round_xhat,
        GROUPED=n_groups > 1, STORE_MEAN=mean is not None, STORE_RSTD=rstd is not None,
        BLOCK_M=block_m, BLOCK_N=block_n, PARAMS_FIRST=grid[0] <= PARAMS_FIRST_MAX_PROGRAMS,
        RTNE_BY_HAND=RTNE_BY_HAND, num_warps=num_warps,
    )


def _out(x: torch.Tensor, out: Optional[torch.Tensor]) -> torch.Tensor:
    return out if out is not None else torch.empty(x.shape, dtype=x.dtype, device=x.device)


def rms_norm(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float, weight_offset: float,
             out: Optional[torch.Tensor]) -> torch.Tensor:
    """RMSNorm, HF order: ``round(x * rstd) * (weight + weight_offset)``, rounded to x.dtype."""
    y = _out(x, out)
    launch_rownorm(x, y, weight=weight, is_rms=True, round_xhat=True, eps=eps,
                   weight_offset=weight_offset)
    return y


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float,
                       weight_offset: float, inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``r = round(x + residual)``; returns ``(rms_norm(r), r)``; in place into ``(x, residual)``."""
    if inplace:
        y, r = x, residual
    else:
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        r = torch.empty(residual.shape, dtype=residual.dtype, device=residual.device)
    launch_rownorm(x, y, weight=weight, residual=residual, residual_out=r, is_rms=True,
                   round_xhat=True, eps=eps, weight_offset=weight_offset)
    return y, r


def layer_norm(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
               eps: float, out: Optional[torch.Tensor]) -> torch.Tensor:
    """LayerNorm computed entirely in float32, rounded once to x.dtype."""
    y = _out(x, out)
    launch_rownorm(x, y, weight=weight, bias=bias, is_rms=False, eps=eps)
    return y


def norm_gated(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
               z: Optional[torch.Tensor], eps: float, group_size: int, norm_before_gate: bool,
               is_rms_norm: bool, out: Optional[torch.Tensor]
               ) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Gated (grouped) Layer/RMS norm; ``mean`` (None for RMS) and ``rstd`` are f32 ``(ngroups*M,)``."""
    M, N = x.shape
    n_groups = N // group_size
    y = _out(x, out)
    rstd = torch.empty((n_groups * M,), dtype=torch.float32, device=x.device)
    mean = None if is_rms_norm else torch.empty_like(rstd)
    launch_rownorm(x, y, n_groups=n_groups, weight=weight, bias=bias, z=z,
                   gate_first=z is not None and not norm_before_gate, is_rms=is_rms_norm, eps=eps,
                   mean=mean, rstd=rstd)
    return y, mean, rstd
