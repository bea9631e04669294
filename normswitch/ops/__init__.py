"""The public ops, one family per file; each file declares its ops (see ``normswitch._op``).

- ``rms_norm.py``: ``rms_norm``, ``fused_add_rms_norm`` (Gemma through ``weight_offset=1.0``);
- ``layer_norm.py``: ``layer_norm``, ``layer_norm_channels_first``;
- ``norm_gated.py``: ``norm_gated``, ``layernorm_fn``, ``rmsnorm_fn``.

``DECLARATIONS`` maps each op name to its declaration (contract, checks, reference, cases).
"""
from __future__ import annotations

from .._op import Op
from .layer_norm import CHANNELS_FIRST, LAYER_NORM, layer_norm, layer_norm_channels_first
from .norm_gated import NORM_GATED, layernorm_fn, norm_gated, rmsnorm_fn
from .rms_norm import FUSED_ADD_RMS_NORM, RMS_NORM, fused_add_rms_norm, rms_norm

DECLARATIONS: dict[str, Op] = {
    op.name: op for op in (RMS_NORM, FUSED_ADD_RMS_NORM, LAYER_NORM, CHANNELS_FIRST, NORM_GATED)
}
OPS = tuple(DECLARATIONS)

__all__ = [
    "rms_norm", "fused_add_rms_norm", "layer_norm", "layer_norm_channels_first", "norm_gated",
    "layernorm_fn", "rmsnorm_fn", "DECLARATIONS", "OPS",
]
