"""What a backend is: a name, per-op kernel functions, availability and a supports() predicate.

Every kernel function receives inputs already validated and shaped by ``normswitch.ops``
(the *kernel contract*):

- ``x`` (and ``z``, ``residual``) are 2-D ``(M, N)`` with ``stride(1) == 1``; rows may be strided
  (``stride(0) >= N``). ``M`` may be 0.
- ``weight``/``bias`` are 1-D ``(N,)`` contiguous, any float dtype; read them as float32.
- ``out``, when given, is ``(M, N)`` of ``x.dtype`` with ``stride(1) == 1``: write into it and return it.

Signatures, per op name:

- ``rms_norm(x, weight|None, eps, weight_offset, out|None) -> y``
- ``fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace) -> (y, r)``; with
  ``inplace`` write ``y`` into ``x`` and ``r`` into ``residual`` (both contiguous) and return them.
- ``layer_norm(x, weight|None, bias|None, eps, out|None) -> y``
- ``layer_norm_channels_first(x, weight, bias, eps) -> y``: ``x`` is contiguous ``(B, C, S)``,
  normalized over ``C``; ``y`` has the same shape, contiguous.
- ``norm_gated(x, weight, bias|None, z|None, eps, group_size, norm_before_gate, is_rms_norm, out|None)
  -> (y, mean|None, rstd)``; ``group_size`` is an int dividing ``N``; ``mean``/``rstd`` are float32
  ``(ngroups * M,)``, group-major (index ``g * M + m``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

OPS = (
    "rms_norm",
    "fused_add_rms_norm",
    "layer_norm",
    "layer_norm_channels_first",
    "norm_gated",
)


@dataclass(frozen=True)
class Call:
    """The features of one op call that a backend may accept or decline."""

    op: str
    device_type: str
    dtype: torch.dtype
    hidden_size: int
    features: frozenset = frozenset()
    group_size: int = 0


FEATURES = {
    "weight": "a weight is given",
    "bias": "a bias is given",
    "offset": "weight_offset != 0",
    "out": "an out= tensor is given",
    "strided": "rows are not contiguous (x.stride(0) != N)",
    "inplace": "fused_add_rms_norm in place",
    "z": "norm_gated with a gate z",
    "gate_first": "norm_gated with norm_before_gate=False",
    "rms": "norm_gated with is_rms_norm=True",
    "grouped": "norm_gated with group_size < N",
}


def _always(call: Call) -> Optional[str]:
    return None


@dataclass
class Backend:
    """A backend: ``availability(device_type)`` and ``supports(call)`` return None or a reason."""

    name: str
    impls: dict[str, Callable]
    availability: Callable[[str], Optional[str]]
    supports: Callable[[Call], Optional[str]] = field(default=_always)
    details: Optional[Callable[[str, str], str]] = None
    """Optional ``details(op, device_type)``: a line for ``normswitch info`` (e.g. which provider serves)."""
