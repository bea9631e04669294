"""RMSNorm and fused residual-add RMSNorm (Gemma's form through ``weight_offset=1.0``).

Kernel contract (what every backend's implementation receives, after the checks here):
``rms_norm(x, weight, eps, weight_offset, out)`` and
``fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace)``; ``x``/``residual``/
``out`` are 2-D ``(M, N)``, M > 0, unit stride along N (rows may be strided); ``weight`` is
``(N,)`` contiguous of any float dtype, read as float32; ``out`` has x's dtype. In place, ``x``
and ``residual`` are contiguous and receive the norm and the sum.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch

from .. import checks
from .._fast import LIKE, OUT, PARAM, VALUE, X
from .._op import Op, empty_like, rows, strided, traced_with_out, writable_rows
from ._inputs import param, rand

Tensor = torch.Tensor
F64 = torch.float64
_ops = torch.ops.normswitch


def rms_norm(
    x: Tensor,
    weight: Optional[Tensor] = None,
    eps: float = 1e-6,
    *,
    weight_offset: float = 0.0,
    out: Optional[Tensor] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """RMSNorm over the last dimension, in the order of HF's ``DeepseekV2RMSNorm``.

    ``y = round(x * rsqrt(mean(x^2) + eps)) * (weight + weight_offset)``, rounded again to
    x's dtype; the statistics and the product are computed in float32.

    Parameters
    ----------
    x : Tensor, shape (..., N), float16/bfloat16/float32
    weight : Tensor, shape (N,), any float dtype, or None (no scaling)
    eps : float, finite and >= 0
    weight_offset : float
        Added to the weight (``1.0`` is Gemma's RMSNorm).
    out : Tensor of x's shape and dtype, optional; written and returned.
    backend : str, optional
        Force one backend (tests, benchmarks); raises ``BackendUnavailableError`` if it cannot.

    Returns
    -------
    Tensor of x's shape and dtype.
    """
    return RMS_NORM.entry(x, weight, eps, weight_offset, out, backend=backend)


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
    """Residual add then RMSNorm: ``r = x + residual``; returns ``(rms_norm(r), r)``.

    The sum is computed in float32 and stored (rounded) as residual's dtype; the norm of the
    stored sum follows :func:`rms_norm` and is returned in x's dtype.

    Parameters
    ----------
    x, residual : Tensor, one shape (..., N), float16/bfloat16/float32
    weight : Tensor, shape (N,), any float dtype
    eps, weight_offset : float, as in :func:`rms_norm`
    inplace : bool
        Write the norm into ``x`` and the sum into ``residual`` and return those two tensors
        (the vLLM / sgl-kernel convention).
    backend : str, optional

    Returns
    -------
    (Tensor of x's dtype, Tensor of residual's dtype), both of x's shape.
    """
    return FUSED_ADD_RMS_NORM.entry(x, residual, weight, eps, weight_offset, inplace, backend=backend)


# -- checks and the kernel's arguments -------------------------------------------------------
def _check_rms(x, weight, eps, weight_offset, out) -> tuple:
    checks.tensor("x", x)
    weight = checks.param("weight", weight, x.shape[-1], x)
    eps = checks.eps(eps)
    weight_offset = checks.number("weight_offset", weight_offset)
    if out is not None:
        checks.like("out", out, x, x.dtype)
        checks.own_memory("out", out)
        checks.apart("out", out, {"x": x, "weight": weight}, alias_ok=("x",))
    return x, weight, eps, weight_offset, out


def _empty_rms(x, weight, eps, weight_offset, out) -> Tensor:
    return torch.empty_like(x) if out is None else out


def finish_rows(x: Tensor, out: Optional[Tensor], o2: Optional[Tensor]):
    """Turns a kernel's (M, N) result into the public one: x's shape, or ``out`` (written by the
    kernel through the view ``o2``, or copied into when it has no such view). None: as is."""
    if out is None:
        if x.dim() == 2:
            return None
        return lambda y: y.view(x.shape) if y.is_contiguous() else y.reshape(x.shape)
    if o2 is out:
        return None
    if o2 is not None:
        return lambda y: out
    return lambda y: out.copy_(y.view(out.shape))


def _to_kernel_rms(x, weight, eps, weight_offset, out):
    o2 = None if out is None else writable_rows(out)
    return (rows(x), weight, eps, weight_offset, o2), finish_rows(x, out, o2)


def _rms_features(x, weight, eps, weight_offset, out) -> tuple[str, ...]:
    return tuple(name for name, on in (
        ("gemma", weight_offset == 1.0),
        ("mixed", weight is not None and weight.dtype != x.dtype),
        ("offset", weight_offset != 0.0),
        ("out", out is not None),
        ("strided", strided(x) or strided(out)),
        ("weight", weight is not None),
    ) if on)


def _check_add(x, residual, weight, eps, weight_offset, inplace) -> tuple:
    checks.tensor("x", x)
    if residual is None:
        raise TypeError("residual: expected a tensor of x's shape, got None")
    residual = checks.like("residual", residual, x)
    if weight is None:
        raise TypeError("weight: expected a tensor of shape (N,), got None")
    weight = checks.param("weight", weight, x.shape[-1], x)
    inplace = checks.flag("inplace", inplace)
    if inplace:
        checks.own_memory("x", x)
        checks.own_memory("residual", residual)
        checks.apart("residual", residual, {"x": x, "weight": weight})
        checks.apart("x", x, {"weight": weight})
    return x, residual, weight, checks.eps(eps), checks.number("weight_offset", weight_offset), inplace


def _empty_add(x, residual, weight, eps, weight_offset, inplace):
    return (x, residual) if inplace else (torch.empty_like(x), torch.empty_like(residual))


def _to_kernel_add(x, residual, weight, eps, weight_offset, inplace):
    if inplace:
        x2, r2 = writable_rows(x), writable_rows(residual)
        if x2 is not None and r2 is not None and x2.is_contiguous() and r2.is_contiguous():
            same = x2 is x and r2 is residual
            return (x2, r2, weight, eps, weight_offset, True), (None if same else lambda _: (x, residual))

        def write_back(result: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            x.copy_(result[0].view(x.shape))
            residual.copy_(result[1].view(residual.shape))
            return x, residual
        return (rows(x), rows(residual), weight, eps, weight_offset, False), write_back
    kargs = (rows(x), rows(residual), weight, eps, weight_offset, False)
    if x.dim() == 2:
        return kargs, None
    return kargs, lambda r: (r[0].reshape(x.shape), r[1].reshape(residual.shape))


def _add_features(x, residual, weight, eps, weight_offset, inplace) -> tuple[str, ...]:
    return tuple(name for name, on in (
        ("gemma", weight_offset == 1.0),
        ("inplace", inplace),
        ("mixed", weight.dtype != x.dtype),
        ("offset", weight_offset != 0.0),
        ("residual_mixed", residual.dtype != x.dtype),
        ("strided", strided(x) or strided(residual)),
        ("weight", True),
    ) if on)


def _add_traced(kargs: tuple, backend: Optional[str]) -> tuple[Tensor, Tensor]:
    x, residual, weight, eps, weight_offset, inplace = kargs
    if inplace:
        _ops.fused_add_rms_norm_(x, residual, weight, eps, weight_offset, backend)
        return x, residual
    return _ops.fused_add_rms_norm(x, residual, weight, eps, weight_offset, backend)


# -- float64 references ----------------------------------------------------------------------
def reference_rms_norm(x, weight=None, eps=1e-6, weight_offset=0.0, out=None,
                       out_dtype: Optional[torch.dtype] = None) -> tuple[Tensor]:
    """``round(x * rsqrt(mean(x^2) + eps)) * (weight + offset)`` in float64 (not rounded after)."""
    xd = x.to(F64)
    xh = (xd * torch.rsqrt(xd.square().mean(-1, keepdim=True) + eps)).to(out_dtype or x.dtype).to(F64)
    return (xh if weight is None else xh * (weight.to(F64) + weight_offset),)


def reference_fused_add(x, residual, weight, eps=1e-6, weight_offset=0.0,
                        inplace=False) -> tuple[Tensor, Tensor]:
    """``r = round(x + residual)`` to residual's dtype; ``(rms_norm(r) for x's dtype, r)``."""
    r = (x.to(F64) + residual.to(F64)).to(residual.dtype)
    return reference_rms_norm(r, weight, eps, weight_offset, out_dtype=x.dtype)[0], r.to(F64)


# -- generated cases -------------------------------------------------------------------------
SHAPES = ((5, 1000), (3, 1), (2, 3, 96), (0, 64), (1, 4096))
"""N not a power of two, N = 1, 3-D, M = 0, one row of a common hidden size."""


def _rms_cases(device: str, dtype: torch.dtype) -> Iterator[tuple[str, dict[str, Any]]]:
    for shape in SHAPES:
        x = rand(shape, dtype, device)
        n = shape[-1]
        yield f"{shape}", dict(x=x, weight=param(n, dtype, device))
        yield f"{shape} gemma", dict(x=x, weight=param(n, dtype, device), weight_offset=1.0)
    x = rand((6, 130), dtype, device, layout="strided")
    yield "(6, 130) strided rows", dict(x=x, weight=param(130, dtype, device))
    yield "(6, 130) no weight", dict(x=x, weight=None, eps=1e-5)
    x = rand((4, 3, 72), dtype, device)
    for layout in ("strided", "expanded"):
        yield f"(4, 3, 72) {layout} weight", dict(x=x, weight=param(72, dtype, device, layout))
    yield "(4, 3, 72) float32 weight", dict(x=x, weight=param(72, torch.float32, device))
    yield "(4, 3, 72) expanded x", dict(x=rand((4, 3, 72), dtype, device, layout="expanded"),
                                        weight=param(72, dtype, device))
    yield "(4, 3, 72) out=", dict(x=x, weight=param(72, dtype, device), out=torch.empty_like(x))
    out = torch.empty(4, 3, 80, dtype=dtype, device=device)[..., :72]
    yield "(4, 3, 72) strided out=", dict(x=x, weight=param(72, dtype, device), out=out)


def _add_cases(device: str, dtype: torch.dtype) -> Iterator[tuple[str, dict[str, Any]]]:
    for shape in SHAPES:
        n = shape[-1]
        for inplace in (False, True):
            yield f"{shape} inplace={inplace}", dict(
                x=rand(shape, dtype, device), residual=rand(shape, dtype, device, scale=1.0),
                weight=param(n, dtype, device), inplace=inplace)
    for layout in ("strided", "expanded"):
        yield f"(6, 130) {layout} weight", dict(
            x=rand((6, 130), dtype, device), residual=rand((6, 130), dtype, device),
            weight=param(130, dtype, device, layout), weight_offset=1.0)
    for inplace in (False, True):
        yield f"(6, 130) strided rows inplace={inplace}", dict(
            x=rand((6, 130), dtype, device, layout="strided"),
            residual=rand((6, 130), dtype, device, layout="strided"),
            weight=param(130, dtype, device), inplace=inplace)
        yield f"(2, 3, 96) float32 residual inplace={inplace}", dict(
            x=rand((2, 3, 96), dtype, device), residual=rand((2, 3, 96), torch.float32, device),
            weight=param(96, torch.float32, device), inplace=inplace)


RMS_NORM = Op(
    name="rms_norm",
    kernel_args=("x", "weight", "eps", "weight_offset", "out"),
    key=(X, PARAM, VALUE, VALUE, OUT),
    check=_check_rms, empty=_empty_rms, to_kernel=_to_kernel_rms, traced=traced_with_out("rms_norm"),
    features=_rms_features, reference=reference_rms_norm,
    outputs=lambda result, kwargs: {"y": result},
    cases=_rms_cases, writes=("out",), public=rms_norm,
)

RMS_NORM.define_with_out("Tensor x, Tensor? weight, float eps, float weight_offset")

FUSED_ADD_RMS_NORM = Op(
    name="fused_add_rms_norm",
    kernel_args=("x", "residual", "weight", "eps", "weight_offset", "inplace"),
    key=(X, LIKE, PARAM, VALUE, VALUE, VALUE),
    check=_check_add, empty=_empty_add, to_kernel=_to_kernel_add, traced=_add_traced,
    features=_add_features, reference=reference_fused_add,
    outputs=lambda result, kwargs: {"y": result[0], "residual": result[1]},
    cases=_add_cases, writes=("x", "residual"), public=fused_add_rms_norm,
    apart=("inplace", ("x", "residual", "weight")),
)


def _add_functional(x, residual, weight, eps, weight_offset, backend):
    y, r = FUSED_ADD_RMS_NORM.run_kernel((x, residual, weight, eps, weight_offset, False), backend)
    return y.contiguous(), r.contiguous()


FUSED_ADD_RMS_NORM.define(
    "fused_add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps, float weight_offset,"
    " str? backend) -> (Tensor, Tensor)",
    _add_functional, lambda x, r, w, eps, off, backend: (empty_like(x), empty_like(r)))


def _add_inplace(x, residual, weight, eps, weight_offset, backend) -> None:
    FUSED_ADD_RMS_NORM.run_kernel((x, residual, weight, eps, weight_offset, True), backend)


FUSED_ADD_RMS_NORM.define(
    "fused_add_rms_norm_(Tensor(a!) x, Tensor(b!) residual, Tensor weight, float eps,"
    " float weight_offset, str? backend) -> ()",
    _add_inplace, lambda x, r, w, eps, off, backend: None)
