"""Launch configuration and kernel-contract entry points for the last-dimension norms.

Every function here takes inputs already shaped by ``normswitch.ops`` (its kernel contracts):
2-D ``(M, N)`` tensors with unit column stride, 1-D contiguous ``weight``/``bias``.

The launch configuration depends only on the row length ``G`` (never on ``M``), so a row's result
is bitwise the same whatever the batch size (batch invariance).
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import torch

import triton

from .bound import ALIGN, RowLaunch, bindable
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


def _rownorm_args(x: torch.Tensor, y: torch.Tensor, *, n_groups: int = 1, weight: Optional[torch.Tensor] = None,
                  bias: Optional[torch.Tensor] = None, residual: Optional[torch.Tensor] = None,
                  residual_out: Optional[torch.Tensor] = None, z: Optional[torch.Tensor] = None,
                  gate_first: bool = False, is_rms: bool, round_xhat: bool = False, eps: float,
                  weight_offset: float = 0.0, mean: Optional[torch.Tensor] = None,
                  rstd: Optional[torch.Tensor] = None, config: Optional[tuple[bool, int, int, int]] = None,
                  contiguous: bool = False) -> tuple[Any, int, list, int]:
    """``(kernel, programs, arguments in parameter order, num_warps)`` of one launch; with
    ``contiguous`` every row stride is the hidden size (as for any contiguous tensor of M > 1)."""
    M, N = x.shape
    G = N // n_groups
    looped, block_m, block_n, num_warps = config or row_config(G, MAX_FUSED_N, LOOP_BLOCK_N)
    kernel = _rownorm_looped_kernel if looped else _rownorm_fused_kernel
    programs = triton.cdiv(M * n_groups, block_m)

    def stride(t: Optional[torch.Tensor]) -> int:
        return 0 if t is None else N if contiguous else t.stride(0)

    args = [
        x, residual if residual is not None else x, residual_out if residual_out is not None else y,
        z if z is not None else x, weight if weight is not None else x,
        bias if bias is not None else x, y,
        mean if mean is not None else y, rstd if rstd is not None else y,
        M, n_groups, G, stride(x), stride(residual), stride(residual_out), stride(z), stride(y),
        eps, weight_offset,
        is_rms, residual is not None, z is not None, gate_first,  # IS_RMS, HAS_RES, HAS_Z, GATE_FIRST
        weight is not None, bias is not None, round_xhat, n_groups > 1,  # HAS_W, HAS_B, ROUND_XHAT, GROUPED
        mean is not None, rstd is not None,  # STORE_MEAN, STORE_RSTD
        block_m, block_n, programs <= PARAMS_FIRST_MAX_PROGRAMS, RTNE_BY_HAND,
    ]
    return kernel, programs, args, num_warps


def launch_rownorm(x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> None:
    """Normalize each of the ``n_groups`` groups of every row of ``x`` (M, N) into ``y``.

    Keywords as :func:`_rownorm_args`: ``n_groups``, ``weight``, ``bias``, ``residual``,
    ``residual_out``, ``z``, ``gate_first``, ``is_rms``, ``round_xhat``, ``eps``,
    ``weight_offset``, ``mean``, ``rstd``; ``config`` overrides :func:`row_config`
    (``(looped, BLOCK_M, BLOCK_N, num_warps)``, for tuning).
    """
    if x.shape[0] == 0 or x.shape[1] == 0:
        return
    kernel, programs, args, num_warps = _rownorm_args(x, y, **kwargs)
    kernel[(programs,)](*args, num_warps=num_warps)


def bind_rownorm(x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> Optional[RowLaunch]:
    """The :class:`RowLaunch` of calls like this one (contiguous tensors), or None where
    launches are not bound (the interpreter) or the sample is not 16-byte aligned. It receives
    ``(x, y, weight, bias, residual, residual_out, z, mean, rstd)``."""
    roles = (x, y, *(kwargs.get(k) for k in ("weight", "bias", "residual", "residual_out", "z", "mean", "rstd")))
    if not bindable() or x.shape[0] == 0 or any(t is not None and t.data_ptr() % ALIGN for t in roles):
        return None
    kernel, _, args, num_warps = _rownorm_args(x, y, contiguous=True, **kwargs)
    return RowLaunch(kernel, args, roles, num_warps=num_warps, params_first_max=PARAMS_FIRST_MAX_PROGRAMS)


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


# -- bound forms for the eager fast path (normswitch._fast): fn.bind(*args) gives a function of
# the same arguments that serves every call of args' kind, or None. ----------------------------

def _bind_rms_norm(x, weight, eps, weight_offset, out):
    launch = None if out is not None else bind_rownorm(
        x, torch.empty_like(x), weight=weight, is_rms=True, round_xhat=True, eps=eps, weight_offset=weight_offset)
    if launch is None:
        return None

    def bound(x, weight, eps, weight_offset, out):
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        if launch(x.shape[0], (x, y, weight, None, None, None, None, None, None)):
            return y
        return rms_norm(x, weight, eps, weight_offset, out)
    return bound


def _bind_fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace):
    y, r = (x, residual) if inplace else (torch.empty_like(x), torch.empty_like(residual))
    launch = bind_rownorm(x, y, weight=weight, residual=residual, residual_out=r, is_rms=True, round_xhat=True,
                          eps=eps, weight_offset=weight_offset)
    if launch is None:
        return None

    def bound(x, residual, weight, eps, weight_offset, inplace):
        if inplace:
            y, r = x, residual
        else:
            y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
            r = torch.empty(residual.shape, dtype=residual.dtype, device=residual.device)
        if launch(x.shape[0], (x, y, weight, None, residual, r, None, None, None)):
            return y, r
        return fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace)
    return bound


def _bind_layer_norm(x, weight, bias, eps, out):
    launch = None if out is not None else bind_rownorm(
        x, torch.empty_like(x), weight=weight, bias=bias, is_rms=False, eps=eps)
    if launch is None:
        return None

    def bound(x, weight, bias, eps, out):
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        if launch(x.shape[0], (x, y, weight, bias, None, None, None, None, None)):
            return y
        return layer_norm(x, weight, bias, eps, out)
    return bound


def _bind_norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out):
    if out is not None:
        return None
    M, N = x.shape
    n_groups = N // group_size
    rstd = torch.empty((n_groups * M,), dtype=torch.float32, device=x.device)
    launch = bind_rownorm(x, torch.empty_like(x), n_groups=n_groups, weight=weight, bias=bias, z=z,
                          gate_first=z is not None and not norm_before_gate, is_rms=is_rms_norm, eps=eps,
                          mean=None if is_rms_norm else torch.empty_like(rstd), rstd=rstd)
    if launch is None:
        return None

    def bound(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out):
        m = x.shape[0]
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        rstd = torch.empty((n_groups * m,), dtype=torch.float32, device=x.device)
        mean = None if is_rms_norm else torch.empty_like(rstd)
        if launch(m, (x, y, weight, bias, None, None, z, mean, rstd)):
            return y, mean, rstd
        return norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out)
    return bound


rms_norm.bind = _bind_rms_norm
fused_add_rms_norm.bind = _bind_fused_add_rms_norm
layer_norm.bind = _bind_layer_norm
norm_gated.bind = _bind_norm_gated
