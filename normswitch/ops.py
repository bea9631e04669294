"""Public functional ops. Each validates its arguments and dispatches through the registry.

All normalize the last dimension (``layer_norm_channels_first``: dim 1), accept any number of
leading dimensions, compute in float32 and return ``x.dtype``. ``backend=`` forces one backend
(tests, benchmarks) and raises ``BackendUnavailableError`` if it cannot serve the call.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import checks, dispatch
from .fastpath import INF, param_key, tracing
from .library import traced
from .registry import REGISTRY

Tensor = torch.Tensor
_ops = torch.ops.normswitch


def _out_rows(out: Tensor) -> Optional[Tensor]:
    """A 2-D view of ``out`` that kernels can write (unit stride along N), or None."""
    try:
        view = out if out.dim() == 2 else out.view(-1, out.shape[-1])
    except RuntimeError:
        return None
    return view if view.stride(-1) == 1 else None


def _finish(y: Tensor, x: Tensor, out: Optional[Tensor], written: bool) -> Tensor:
    if out is None:
        if x.dim() == 2:
            return y
        return y.view(x.shape) if y.is_contiguous() else y.reshape(x.shape)
    if not written:
        out.copy_(y.view(x.shape) if y.is_contiguous() else y.reshape(x.shape))
    return out


def rms_norm(
    x: Tensor,
    weight: Optional[Tensor] = None,
    eps: float = 1e-6,
    *,
    weight_offset: float = 0.0,
    out: Optional[Tensor] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """RMSNorm over the last dim: ``(x * rsqrt(mean(x^2) + eps)).to(x.dtype) * (weight + offset)``.

    x: (..., N) float16/bfloat16/float32; weight: (N,) any float dtype or None. Returns x's
    shape and dtype (written into ``out`` when given). ``weight_offset=1.0`` is Gemma's RMSNorm.
    """
    fast = None
    if out is None and backend is None and type(x) is Tensor and type(eps) is float \
            and type(weight_offset) is float and x.is_contiguous() and not tracing():
        shape = x.shape
        if len(shape) == 2 and shape[0]:
            fast = ("rms_norm", x.dtype, x.device, shape[1], param_key(weight), 0.0 <= eps < INF,
                    -INF < weight_offset < INF, weight_offset != 0.0)
            found = REGISTRY.fast.get(fast)
            if found is not None:
                return REGISTRY.execute(*found, (x, weight, eps, weight_offset, None))
    checks.tensor("x", x)
    weight = checks.param("weight", weight, x.shape[-1], x)
    eps = checks.eps(eps)
    weight_offset = checks.number("weight_offset", weight_offset)
    if out is not None:
        checks.like("out", out, x, x.dtype)
    if x.numel() == 0:
        return torch.empty_like(x) if out is None else out
    x2 = checks.rows(x)
    if traced(x):
        return _finish(_ops.rms_norm(x2, weight, eps, weight_offset, backend), x, out, False)
    o2 = None if out is None else _out_rows(out)
    y = dispatch.rms_norm(x2, weight, eps, weight_offset, o2, backend, fast)
    return _finish(y, x, out, o2 is not None)


def fused_add_rms_norm(
    x: Tensor,
    residual: Tensor,
    weight: Tensor,
    eps: float = 1e-6,
    *,
    weight_offset: float = 0.0,
    inplace: bool = False,
    backend: Optional[str] = None,
) -> tuple[Tensor, Tensor]:
    """``r = x + residual`` (float32 add, stored as residual.dtype); returns ``(rms_norm(r), r)``.

    x, residual: (..., N) of one shape; weight: (N,). With ``inplace=True`` the norm (x.dtype)
    is written into ``x`` and ``r`` into ``residual``, and those two tensors are returned.
    """
    fast = None
    if backend is None and type(x) is Tensor and type(residual) is Tensor and type(eps) is float \
            and type(weight_offset) is float and x.is_contiguous() and residual.is_contiguous() \
            and not tracing():
        shape = x.shape
        if len(shape) == 2 and shape[0] and residual.shape == shape:
            fast = ("fused_add_rms_norm", x.dtype, x.device, shape[1], residual.dtype, residual.device,
                    param_key(weight), 0.0 <= eps < INF, -INF < weight_offset < INF, weight_offset != 0.0,
                    bool(inplace))
            found = REGISTRY.fast.get(fast)
            if found is not None:
                return REGISTRY.execute(*found, (x, residual, weight, eps, weight_offset, bool(inplace)))
    checks.tensor("x", x)
    n = x.shape[-1]
    residual = checks.like("residual", residual, x)
    if weight is None:
        raise TypeError("weight: expected a tensor of shape (N,), got None")
    weight = checks.param("weight", weight, n, x)
    eps = checks.eps(eps)
    weight_offset = checks.number("weight_offset", weight_offset)
    if x.numel() == 0:
        return (x, residual) if inplace else (torch.empty_like(x), torch.empty_like(residual))
    x2, r2 = checks.rows(x), checks.rows(residual)
    if traced(x):
        y, r = _ops.fused_add_rms_norm(x2, r2, weight, eps, weight_offset, backend)
        if not inplace:
            return y.view(x.shape), r.view(residual.shape)
        x.copy_(y.view(x.shape))
        residual.copy_(r.view(residual.shape))
        return x, residual
    if inplace and x.is_contiguous() and residual.is_contiguous():
        dispatch.fused_add_rms_norm(x2, r2, weight, eps, weight_offset, True, backend, fast)
        return x, residual
    y, r = dispatch.fused_add_rms_norm(x2, r2, weight, eps, weight_offset, False, backend,
                                       None if inplace else fast)
    if x.dim() != 2:
        y, r = y.reshape(x.shape), r.reshape(residual.shape)
    if not inplace:
        return y, r
    x.copy_(y)
    residual.copy_(r)
    return x, residual


def layer_norm(
    x: Tensor,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    eps: float = 1e-5,
    *,
    out: Optional[Tensor] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """LayerNorm over the last dim, all in float32, rounded once to x.dtype (``LayerNormfp32``).

    x: (..., N) float16/bfloat16/float32; weight, bias: (N,) any float dtype or None.
    """
    fast = None
    if out is None and backend is None and type(x) is Tensor and type(eps) is float and x.is_contiguous() \
            and not tracing():
        shape = x.shape
        if len(shape) == 2 and shape[0]:
            fast = ("layer_norm", x.dtype, x.device, shape[1], param_key(weight), param_key(bias),
                    0.0 <= eps < INF)
            found = REGISTRY.fast.get(fast)
            if found is not None:
                return REGISTRY.execute(*found, (x, weight, bias, eps, None))
    checks.tensor("x", x)
    n = x.shape[-1]
    weight = checks.param("weight", weight, n, x)
    bias = checks.param("bias", bias, n, x)
    eps = checks.eps(eps)
    if out is not None:
        checks.like("out", out, x, x.dtype)
    if x.numel() == 0:
        return torch.empty_like(x) if out is None else out
    x2 = checks.rows(x)
    if traced(x):
        return _finish(_ops.layer_norm(x2, weight, bias, eps, backend), x, out, False)
    o2 = None if out is None else _out_rows(out)
    y = dispatch.layer_norm(x2, weight, bias, eps, o2, backend, fast)
    return _finish(y, x, out, o2 is not None)


def layer_norm_channels_first(
    x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-6, *, backend: Optional[str] = None
) -> Tensor:
    """LayerNorm over dim 1 of (B, C, *spatial) ``x`` in float32 (SAM's ``LayerNorm2d``).

    weight, bias: (C,). Returns a contiguous tensor of x's shape and dtype.
    """
    checks.tensor("x", x, min_dim=2)
    c = x.shape[1]
    if weight is None or bias is None:
        raise TypeError("weight, bias: layer_norm_channels_first needs both as (C,) tensors")
    weight = checks.param("weight", weight, c, x)
    bias = checks.param("bias", bias, c, x)
    eps = checks.eps(eps)
    if x.numel() == 0:
        return torch.empty_like(x, memory_format=torch.contiguous_format)
    x3 = x.reshape(x.shape[0], c, -1)
    if not x3.is_contiguous():
        x3 = x3.contiguous()
    if traced(x):
        return _ops.layer_norm_channels_first(x3, weight, bias, eps, backend).view(x.shape)
    return dispatch.layer_norm_channels_first(x3, weight, bias, eps, backend).view(x.shape)


def norm_gated(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    eps: float = 1e-6,
    group_size: Optional[int] = None,
    norm_before_gate: bool = True,
    is_rms_norm: bool = False,
    out: Optional[Tensor] = None,
    *,
    backend: Optional[str] = None,
) -> tuple[Tensor, Optional[Tensor], Tensor]:
    """Gated group LayerNorm/RMSNorm with the ``layernorm_gated._layer_norm_fwd`` contract.

    x, z: (M, N); weight, bias: (N,); ``group_size`` divides N (None: N). The gate
    ``silu(z)`` multiplies the affine output when ``norm_before_gate``, else x before the norm.
    Returns ``(out (M, N) of x.dtype, mean or None for RMS, rstd)``; mean/rstd are float32
    ``(ngroups * M,)``, group-major.
    """
    checks.tensor("x", x, min_dim=2)
    if x.dim() != 2:
        raise ValueError(f"x: expected a 2-D (M, N) tensor, got shape {tuple(x.shape)}")
    m, n = x.shape
    if weight is None:
        raise TypeError("weight: expected a tensor of shape (N,), got None")
    weight = checks.param("weight", weight, n, x)
    bias = checks.param("bias", bias, n, x)
    if z is not None:
        checks.like("z", z, x)
    eps = checks.eps(eps)
    group = checks.group_size(group_size, n)
    if out is not None:
        checks.like("out", out, x, x.dtype)
    norm_before_gate, is_rms_norm = bool(norm_before_gate), bool(is_rms_norm)
    if x.numel() == 0:
        stats = x.new_empty((0,), dtype=torch.float32)
        return (torch.empty_like(x) if out is None else out), (None if is_rms_norm else stats), stats
    x2 = checks.rows(x)
    z2 = None if z is None else checks.rows(z)
    if traced(x):
        y, mean, rstd = _ops.norm_gated(x2, weight, bias, z2, eps, group, norm_before_gate, is_rms_norm, backend)
        return _finish(y, x, out, False), (None if is_rms_norm else mean), rstd
    o2 = None if out is None else _out_rows(out)
    y, mean, rstd = dispatch.norm_gated(x2, weight, bias, z2, eps, group, norm_before_gate, is_rms_norm, o2, backend)
    return _finish(y, x, out, o2 is not None), mean, rstd


def layernorm_fn(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    z: Optional[Tensor] = None,
    eps: float = 1e-6,
    group_size: Optional[int] = None,
    norm_before_gate: bool = True,
    is_rms_norm: bool = False,
) -> Tensor:
    """FLA/SGLang ``layernorm_fn``: ``norm_gated`` over (..., N) ``x``; returns x's shape and dtype."""
    checks.tensor("x", x)
    if x.dim() == 2:
        return norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm)[0]
    n = x.shape[-1]
    z2 = None if z is None else checks.like("z", z, x).reshape(-1, n)
    y, _, _ = norm_gated(x.reshape(-1, n), weight, bias, z2, eps, group_size, norm_before_gate, is_rms_norm)
    return y.view(x.shape)


def rmsnorm_fn(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    z: Optional[Tensor] = None,
    eps: float = 1e-6,
    group_size: Optional[int] = None,
    norm_before_gate: bool = True,
) -> Tensor:
    """FLA/SGLang ``rmsnorm_fn``: ``layernorm_fn`` with ``is_rms_norm=True``."""
    return layernorm_fn(x, weight, bias, z, eps, group_size, norm_before_gate, True)
