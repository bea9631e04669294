"""From validated 2-D arguments to the registry: the call's features and the backend's run."""
from __future__ import annotations

from typing import Optional

import torch

from .platform import tensor_device_type
from .registry import REGISTRY

Tensor = torch.Tensor


def _strided(t: Tensor) -> bool:
    m, n = t.shape
    return m > 1 and t.stride(0) != n


def _table(*names: str) -> dict[tuple[bool, ...], tuple[str, ...]]:
    """Feature tuples for every combination of flags, so the hot path does one lookup."""
    table = {}
    for bits in range(1 << len(names)):
        flags = tuple(bool(bits >> i & 1) for i in range(len(names)))
        table[flags] = tuple(sorted(n for n, on in zip(names, flags) if on))
    return table


_RMS_FEATURES = _table("offset", "out", "strided", "weight")
_ADD_FEATURES = _table("inplace", "offset", "strided")
_LN_FEATURES = _table("bias", "out", "strided", "weight")
_GATED_FEATURES = _table("bias", "gate_first", "grouped", "out", "rms", "strided", "z")


def rms_norm(x: Tensor, weight: Optional[Tensor], eps: float, offset: float,
             out: Optional[Tensor], backend: Optional[str], fast_key: Optional[tuple] = None) -> Tensor:
    feats = _RMS_FEATURES[offset != 0.0, out is not None, _strided(x), weight is not None]
    return REGISTRY.run("rms_norm", x, tensor_device_type(x), 0, feats, (x, weight, eps, offset, out), backend,
                        fast_key)


def fused_add_rms_norm(x: Tensor, residual: Tensor, weight: Tensor, eps: float, offset: float,
                       inplace: bool, backend: Optional[str],
                       fast_key: Optional[tuple] = None) -> tuple[Tensor, Tensor]:
    feats = _ADD_FEATURES[inplace, offset != 0.0, _strided(x) or _strided(residual)] + ("weight",)
    return REGISTRY.run("fused_add_rms_norm", x, tensor_device_type(x), 0, feats,
                        (x, residual, weight, eps, offset, inplace), backend, fast_key)


def layer_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
               out: Optional[Tensor], backend: Optional[str], fast_key: Optional[tuple] = None) -> Tensor:
    feats = _LN_FEATURES[bias is not None, out is not None, _strided(x), weight is not None]
    return REGISTRY.run("layer_norm", x, tensor_device_type(x), 0, feats, (x, weight, bias, eps, out), backend,
                        fast_key)


def layer_norm_channels_first(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                              backend: Optional[str]) -> Tensor:
    return REGISTRY.run("layer_norm_channels_first", x, tensor_device_type(x), 0, ("bias", "weight"),
                        (x, weight, bias, eps), backend)


def norm_gated(x: Tensor, weight: Tensor, bias: Optional[Tensor], z: Optional[Tensor], eps: float,
               group_size: int, norm_before_gate: bool, is_rms_norm: bool, out: Optional[Tensor],
               backend: Optional[str]) -> tuple[Tensor, Optional[Tensor], Tensor]:
    feats = _GATED_FEATURES[
        bias is not None, z is not None and not norm_before_gate, group_size != x.shape[1],
        out is not None, is_rms_norm, _strided(x) or (z is not None and _strided(z)), z is not None,
    ]
    return REGISTRY.run("norm_gated", x, tensor_device_type(x), group_size, feats,
                        (x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out), backend)
