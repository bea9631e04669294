"""Gated group LayerNorm/RMSNorm: the ``layernorm_gated._layer_norm_fwd`` contract of
SGLang/FLA/Mamba, and the ``layernorm_fn``/``rmsnorm_fn`` wrappers.

Kernel contract: ``norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate,
is_rms_norm, out)`` with ``x``/``z``/``out`` 2-D ``(M, N)``, M > 0, unit stride along N;
``weight``/``bias`` ``(N,)`` contiguous, any float dtype; ``group_size`` an int dividing N.
Returns ``(y, mean or None, rstd)``; ``mean``/``rstd`` float32 ``(ngroups * M,)``, group-major
(index ``g * M + m``).
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F

from .. import checks
from .._fast import LIKE, OUT, PARAM, VALUE, X
from .._op import Op, empty_like, rows, strided, writable_rows
from ._inputs import param, rand
from .rms_norm import finish_rows

Tensor = torch.Tensor
F64 = torch.float64
_ops = torch.ops.normswitch


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
    """Gated group LayerNorm/RMSNorm, all in float32, rounded once to x's dtype.

    Each group of ``group_size`` columns is normalized on its own. The gate ``silu(z)``
    multiplies the affine output when ``norm_before_gate``, else x before the statistics.

    Parameters
    ----------
    x : Tensor, shape (M, N), float16/bfloat16/float32
    weight : Tensor, shape (N,), any float dtype
    bias : Tensor, shape (N,), optional
    z : Tensor, shape (M, N), any of the three float dtypes, optional
    eps : float, finite and >= 0
    group_size : int dividing N, or None (the whole row)
    norm_before_gate, is_rms_norm : bool
    out : Tensor of x's shape and dtype, optional; written and returned as ``y``.
    backend : str, optional

    Returns
    -------
    (y, mean, rstd)
        ``y`` of x's shape and dtype; ``mean`` (None for RMS) and ``rstd`` float32 of shape
        ``(ngroups * M,)``, group-major.
    """
    return NORM_GATED.entry(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out,
                      backend=backend)


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
    """FLA/SGLang ``layernorm_fn``: :func:`norm_gated` over (..., N) ``x`` (and ``z``).

    Returns the normalized tensor only, of x's shape and dtype.
    """
    checks.tensor("x", x)
    if x.dim() == 2:
        return NORM_GATED.entry(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, None)[0]
    n = x.shape[-1]
    z2 = None if z is None else checks.like("z", z, x).reshape(-1, n)
    y = NORM_GATED.entry(x.reshape(-1, n), weight, bias, z2, eps, group_size, norm_before_gate, is_rms_norm, None)[0]
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
    """FLA/SGLang ``rmsnorm_fn``: :func:`layernorm_fn` with ``is_rms_norm=True``."""
    return layernorm_fn(x, weight, bias, z, eps, group_size, norm_before_gate, True)


def _check(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out) -> tuple:
    checks.tensor("x", x, min_dim=2)
    if x.dim() != 2:
        raise ValueError(f"x: expected a 2-D (M, N) tensor, got shape {tuple(x.shape)}")
    n = x.shape[1]
    if weight is None:
        raise TypeError("weight: expected a tensor of shape (N,), got None")
    weight = checks.param("weight", weight, n, x)
    bias = checks.param("bias", bias, n, x)
    z = checks.like("z", z, x)
    eps = checks.eps(eps)
    group = checks.group_size(group_size, n)
    if out is not None:
        checks.like("out", out, x, x.dtype)
        checks.own_memory("out", out)
        checks.apart("out", out, {"x": x, "z": z, "weight": weight, "bias": bias}, alias_ok=("x", "z"))
    return (x, weight, bias, z, eps, group, checks.flag("norm_before_gate", norm_before_gate),
            checks.flag("is_rms_norm", is_rms_norm), out)


def _empty(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out):
    stats = x.new_empty((0,), dtype=torch.float32)
    return (torch.empty_like(x) if out is None else out), (None if is_rms_norm else stats), stats


def _to_kernel(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out):
    o2 = None if out is None else writable_rows(out)
    kargs = (rows(x), weight, bias, None if z is None else rows(z), eps, group_size,
             norm_before_gate, is_rms_norm, o2)
    finish = finish_rows(x, out, o2)
    if finish is None:
        return kargs, None
    return kargs, lambda result: (finish(result[0]), result[1], result[2])


def _features(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out) -> tuple[str, ...]:
    return tuple(name for name, on in (
        ("bias", bias is not None),
        ("gate_first", z is not None and not norm_before_gate),
        ("grouped", group_size != x.shape[1]),
        ("mixed", weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype)),
        ("out", out is not None),
        ("rms", is_rms_norm),
        ("strided", strided(x) or strided(z) or strided(out)),
        ("z", z is not None),
        ("z_mixed", z is not None and z.dtype != x.dtype),
    ) if on)


def _traced(kargs: tuple, backend: Optional[str]) -> tuple[Tensor, Optional[Tensor], Tensor]:
    *args, out = kargs
    if out is None:
        y, mean, rstd = _ops.norm_gated(*args, backend)
    else:
        mean, rstd = _ops.norm_gated_out(*args, out, backend)
        y = out
    return y, (None if kargs[7] else mean), rstd


def reference(x, weight, bias=None, z=None, eps=1e-6, group_size=None, norm_before_gate=True,
              is_rms_norm=False, out=None, compute: torch.dtype = F64) -> tuple[Tensor, Optional[Tensor], Tensor]:
    """The contract in float64 (or ``compute``): ``(y, mean or None, rstd)``, statistics
    group-major, ``y`` not rounded. The gate is computed in float64 whatever ``compute`` is."""
    m, n = x.shape
    g = group_size or n
    xd = x.to(compute)
    gate = None if z is None else F.silu(z.to(F64)).to(compute)
    if gate is not None and not norm_before_gate:
        xd = xd * gate
    xg = xd.view(m, n // g, g)
    mean = None if is_rms_norm else xg.mean(-1, keepdim=True)
    centered = xg if mean is None else xg - mean
    rstd = torch.rsqrt(centered.square().mean(-1, keepdim=True) + eps)
    y = (centered * rstd).view(m, n) * weight.to(compute)
    if bias is not None:
        y = y + bias.to(compute)
    if gate is not None and norm_before_gate:
        y = y * gate
    stats = [None if s is None else s.view(m, n // g).t().reshape(-1) for s in (mean, rstd)]
    return y, stats[0], stats[1]


def _cases(device: str, dtype: torch.dtype) -> Iterator[tuple[str, dict[str, Any]]]:
    for m, n, group in ((5, 256, None), (3, 96, 32), (1, 1000, 250), (0, 64, None)):
        x = rand((m, n), dtype, device)
        z = rand((m, n), dtype, device)
        w, b = param(n, dtype, device, shift=1.0), param(n, dtype, device)
        for rms in (False, True):
            for before in (True, False):
                yield f"({m}, {n}) g={group} rms={rms} before={before}", dict(
                    x=x, weight=w, bias=None if rms else b, z=z, group_size=group,
                    norm_before_gate=before, is_rms_norm=rms)
        yield f"({m}, {n}) g={group} no gate", dict(x=x, weight=w, bias=b, group_size=group)
    x = rand((6, 130), dtype, device, layout="strided")
    z = rand((6, 130), dtype, device, layout="strided")
    yield "(6, 130) strided rows", dict(x=x, weight=param(130, dtype, device), z=z, is_rms_norm=True)
    x = rand((4, 72), dtype, device)
    for layout in ("strided", "expanded"):
        yield f"(4, 72) {layout} parameters", dict(
            x=x, weight=param(72, dtype, device, layout), bias=param(72, dtype, device, layout),
            z=rand((4, 72), dtype, device, layout=layout), group_size=24, norm_before_gate=False)
    yield "(4, 72) float32 gate and weight", dict(
        x=x, weight=param(72, torch.float32, device), z=rand((4, 72), torch.float32, device))
    yield "(4, 72) out=", dict(x=x, weight=param(72, dtype, device), z=rand((4, 72), dtype, device),
                               out=torch.empty_like(x), is_rms_norm=True, group_size=36)


NORM_GATED = Op(
    name="norm_gated",
    kernel_args=("x", "weight", "bias", "z", "eps", "group_size", "norm_before_gate", "is_rms_norm", "out"),
    key=(X, PARAM, PARAM, LIKE, VALUE, VALUE, VALUE, VALUE, OUT),
    check=_check, empty=_empty, to_kernel=_to_kernel, traced=_traced, features=_features,
    group=lambda x, weight, bias, z, eps, group_size, *rest: group_size,
    reference=reference,
    outputs=lambda result, kwargs: {"y": result[0], "mean": result[1], "rstd": result[2]},
    cases=_cases, writes=("out",), public=norm_gated,
)


def _functional(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, backend):
    y, mean, rstd = NORM_GATED.run_kernel(
        (x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, None), backend)
    return y.contiguous(), (x.new_empty((0,), dtype=torch.float32) if mean is None else mean), rstd


def _into(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out, backend):
    _, mean, rstd = NORM_GATED.run_kernel(
        (x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out), backend)
    return (x.new_empty((0,), dtype=torch.float32) if mean is None else mean), rstd


def _stats_fake(x, group_size, is_rms_norm) -> tuple[Tensor, Tensor]:
    stats = x.shape[0] * (x.shape[1] // group_size)
    return (x.new_empty((0 if is_rms_norm else stats,), dtype=torch.float32),
            x.new_empty((stats,), dtype=torch.float32))


NORM_GATED.define(
    "norm_gated(Tensor x, Tensor weight, Tensor? bias, Tensor? z, float eps, int group_size,"
    " bool norm_before_gate, bool is_rms_norm, str? backend) -> (Tensor, Tensor, Tensor)",
    _functional,
    lambda x, w, b, z, eps, g, nbg, rms, backend: (empty_like(x), *_stats_fake(x, g, rms)))
NORM_GATED.define(
    "norm_gated_out(Tensor x, Tensor weight, Tensor? bias, Tensor? z, float eps, int group_size,"
    " bool norm_before_gate, bool is_rms_norm, Tensor(a!) out, str? backend) -> (Tensor, Tensor)",
    _into, lambda x, w, b, z, eps, g, nbg, rms, out, backend: _stats_fake(x, g, rms))
