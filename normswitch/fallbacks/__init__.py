"""The ``native`` backend: readable PyTorch with the reference semantics of every op, on any
device type (the last resort of every plan)."""
from __future__ import annotations

from typing import Optional

from ..registry import register_impl
from .layer_norm import layer_norm, layer_norm_channels_first
from .norm_gated import norm_gated
from .rms_norm import fused_add_rms_norm, rms_norm


def _available(device_type: str) -> Optional[str]:
    return None


for _fn in (rms_norm, fused_add_rms_norm, layer_norm, layer_norm_channels_first, norm_gated):
    register_impl(_fn.__name__, "native", _fn, available=_available)

__all__ = ["rms_norm", "fused_add_rms_norm", "layer_norm", "layer_norm_channels_first", "norm_gated"]
