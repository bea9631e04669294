"""Native PyTorch backend: the reference semantics of every op, on any device."""
from __future__ import annotations

from typing import Optional

from ..backend import Backend
from .layer_norm import layer_norm, layer_norm_channels_first
from .norm_gated import norm_gated
from .rms_norm import fused_add_rms_norm, rms_norm


def _available(device_type: str) -> Optional[str]:
    return None


BACKEND = Backend(
    name="native",
    impls={
        "rms_norm": rms_norm,
        "fused_add_rms_norm": fused_add_rms_norm,
        "layer_norm": layer_norm,
        "layer_norm_channels_first": layer_norm_channels_first,
        "norm_gated": norm_gated,
    },
    availability=_available,
)

__all__ = ["BACKEND"]
