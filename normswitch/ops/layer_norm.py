"""LayerNorm computed in float32 (DeepSeek-OCR's ``LayerNormfp32``) and its channels-first form
(SAM's ``LayerNorm2d``).

Kernel contract: ``layer_norm(x, weight, bias, eps, out)`` with ``x``/``out`` 2-D ``(M, N)``,
M > 0, unit stride along N, ``weight``/``bias`` ``(N,)`` contiguous of any float dtype (read as
float32); ``layer_norm_channels_first(x, weight, bias, eps)`` with ``x`` contiguous
``(B, C, S)`` normalized over C, returning a contiguous ``(B, C, S)`` tensor.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch

from .. import checks
from .._fast import OUT, PARAM, VALUE, X
from .._op import Op, empty_like, rows, strided, traced_with_out, writable_rows
from ._inputs import param, rand
from .rms_norm import finish_rows

Tensor = torch.Tensor
F64 = torch.float64
_ops = torch.ops.normswitch


def layer_norm(
    x: Tensor,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    eps: float = 1e-5,
    *,
    out: Optional[Tensor] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """LayerNorm over the last dimension, all in float32, rounded once to x's dtype.

    ``y = (x - mean) * rsqrt(var + eps) * weight + bias`` with the biased variance.

    Parameters
    ----------
    x : Tensor, shape (..., N), float16/bfloat16/float32
    weight, bias : Tensor, shape (N,), any float dtype, or None
    eps : float, finite and >= 0
    out : Tensor of x's shape and dtype, optional; written and returned.
    backend : str, optional
        Force one backend (tests, benchmarks).

    Returns
    -------
    Tensor of x's shape and dtype.
    """
    return LAYER_NORM.entry(x, weight, bias, eps, out, backend=backend)


def layer_norm_channels_first(
    x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-6, *, backend: Optional[str] = None
) -> Tensor:
    """LayerNorm over dimension 1 of ``x`` in float32, rounded once (SAM's ``LayerNorm2d``).

    Parameters
    ----------
    x : Tensor, shape (B, C, *spatial), float16/bfloat16/float32
    weight, bias : Tensor, shape (C,), any float dtype
    eps : float, finite and >= 0
    backend : str, optional

    Returns
    -------
    A contiguous tensor of x's shape and dtype.
    """
    return CHANNELS_FIRST.entry(x, weight, bias, eps, backend=backend)


def _check_ln(x, weight, bias, eps, out) -> tuple:
    checks.tensor("x", x)
    n = x.shape[-1]
    weight = checks.param("weight", weight, n, x)
    bias = checks.param("bias", bias, n, x)
    eps = checks.eps(eps)
    if out is not None:
        checks.like("out", out, x, x.dtype)
        checks.own_memory("out", out)
        checks.apart("out", out, {"x": x, "weight": weight, "bias": bias}, alias_ok=("x",))
    return x, weight, bias, eps, out


def _to_kernel_ln(x, weight, bias, eps, out):
    o2 = None if out is None else writable_rows(out)
    return (rows(x), weight, bias, eps, o2), finish_rows(x, out, o2)


def _mixed(x: Tensor, *params: Optional[Tensor]) -> bool:
    return any(p is not None and p.dtype != x.dtype for p in params)


def _ln_features(x, weight, bias, eps, out) -> tuple[str, ...]:
    return tuple(name for name, on in (
        ("bias", bias is not None),
        ("mixed", _mixed(x, weight, bias)),
        ("out", out is not None),
        ("strided", strided(x) or strided(out)),
        ("weight", weight is not None),
    ) if on)


def _check_cf(x, weight, bias, eps) -> tuple:
    checks.tensor("x", x, min_dim=2)
    c = x.shape[1]
    if c == 0:
        raise ValueError(f"x: the channel dimension (dim 1) is empty (shape {tuple(x.shape)})")
    if weight is None or bias is None:
        raise TypeError("weight, bias: layer_norm_channels_first needs both as (C,) tensors")
    return x, checks.param("weight", weight, c, x), checks.param("bias", bias, c, x), checks.eps(eps)


def _to_kernel_cf(x, weight, bias, eps):
    x3 = x if x.dim() == 3 else x.reshape(x.shape[0], x.shape[1], -1)
    if not x3.is_contiguous():
        x3 = x3.contiguous()
    finish = None if x3 is x else (lambda y: y.view(x.shape))
    return (x3, weight, bias, eps), finish


def _cf_traced(kargs: tuple, backend: Optional[str]) -> Tensor:
    return _ops.layer_norm_channels_first(*kargs, backend)


# -- float64 references ----------------------------------------------------------------------
def reference_layer_norm(x, weight=None, bias=None, eps=1e-5, out=None, dim: int = -1) -> tuple[Tensor]:
    """LayerNorm over ``dim`` in float64."""
    xd = x.to(F64)
    centered = xd - xd.mean(dim, keepdim=True)
    y = centered * torch.rsqrt(centered.square().mean(dim, keepdim=True) + eps)
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    if weight is not None:
        y = y * weight.to(F64).view(shape)
    if bias is not None:
        y = y + bias.to(F64).view(shape)
    return (y,)


def reference_channels_first(x, weight, bias, eps=1e-6) -> tuple[Tensor]:
    """LayerNorm over dimension 1 in float64."""
    return reference_layer_norm(x, weight, bias, eps, dim=1)


# -- generated cases -------------------------------------------------------------------------
def _ln_cases(device: str, dtype: torch.dtype) -> Iterator[tuple[str, dict[str, Any]]]:
    for shape in ((5, 1000), (3, 1), (2, 3, 96), (0, 64), (1, 1024)):
        x = rand(shape, dtype, device, shift=1.5)
        n = shape[-1]
        yield f"{shape}", dict(x=x, weight=param(n, dtype, device), bias=param(n, torch.float32, device))
    x = rand((6, 130), dtype, device, layout="strided", shift=1.5)
    yield "(6, 130) strided rows", dict(x=x, weight=param(130, dtype, device), bias=param(130, dtype, device))
    yield "(6, 130) no affine", dict(x=x, eps=1e-6)
    x = rand((4, 3, 72), dtype, device, shift=1.5)
    for layout in ("strided", "expanded"):
        yield f"(4, 3, 72) {layout} parameters", dict(
            x=x, weight=param(72, dtype, device, layout), bias=param(72, dtype, device, layout))
    yield "(4, 3, 72) expanded x", dict(x=rand((4, 3, 72), dtype, device, layout="expanded"),
                                        weight=param(72, dtype, device), bias=None)
    yield "(4, 3, 72) out=", dict(x=x, weight=param(72, dtype, device), bias=param(72, dtype, device),
                                  out=torch.empty_like(x))
    out = torch.empty(4, 3, 80, dtype=dtype, device=device)[..., :72]
    yield "(4, 3, 72) strided out=", dict(x=x, weight=None, bias=param(72, dtype, device), out=out)


def _cf_cases(device: str, dtype: torch.dtype) -> Iterator[tuple[str, dict[str, Any]]]:
    for shape in ((2, 64, 5, 3), (1, 7, 33), (2, 1, 4, 4), (0, 8, 2, 2), (1, 256, 1, 1)):
        c = shape[1]
        yield f"{shape}", dict(x=rand(shape, dtype, device, shift=1.0), weight=param(c, dtype, device),
                               bias=param(c, dtype, device))
    x = rand((2, 5, 4, 6), dtype, device, shift=1.0).permute(0, 3, 1, 2)  # channels-last memory
    yield "(2, 6, 5, 4) channels-last x", dict(x=x, weight=param(6, dtype, device, "strided"),
                                               bias=param(6, torch.float32, device, "expanded"))


LAYER_NORM = Op(
    name="layer_norm",
    kernel_args=("x", "weight", "bias", "eps", "out"),
    key=(X, PARAM, PARAM, VALUE, OUT),
    check=_check_ln, empty=lambda x, weight, bias, eps, out: torch.empty_like(x) if out is None else out,
    to_kernel=_to_kernel_ln, traced=traced_with_out("layer_norm"), features=_ln_features,
    reference=reference_layer_norm, outputs=lambda result, kwargs: {"y": result},
    cases=_ln_cases, writes=("out",), public=layer_norm,
)

LAYER_NORM.define_with_out("Tensor x, Tensor? weight, Tensor? bias, float eps")

CHANNELS_FIRST = Op(
    name="layer_norm_channels_first",
    kernel_args=("x", "weight", "bias", "eps"),
    key=(X, PARAM, PARAM, VALUE),
    check=_check_cf,
    empty=lambda x, weight, bias, eps: torch.empty_like(x, memory_format=torch.contiguous_format),
    to_kernel=_to_kernel_cf, traced=_cf_traced,
    features=lambda x, weight, bias, eps: ("bias", "mixed", "weight") if _mixed(x, weight, bias)
    else ("bias", "weight"),
    reference=reference_channels_first, outputs=lambda result, kwargs: {"y": result},
    cases=_cf_cases, public=layer_norm_channels_first,
)
CHANNELS_FIRST.define(
    "layer_norm_channels_first(Tensor x, Tensor weight, Tensor bias, float eps, str? backend) -> Tensor",
    lambda x, w, b, eps, backend: CHANNELS_FIRST.run_kernel((x, w, b, eps), backend).contiguous(),
    lambda x, w, b, eps, backend: empty_like(x))
