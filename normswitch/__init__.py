"""normswitch: one portable, fast family of normalization ops for LLM serving engines."""
from .modules import GemmaRMSNorm, LayerNorm2d, LayerNormFP32, LayerNormGated, RMSNorm, RMSNormGated
from .ops import (
    fused_add_rms_norm,
    layer_norm,
    layer_norm_channels_first,
    layernorm_fn,
    norm_gated,
    rms_norm,
    rmsnorm_fn,
)
from .registry import reset

__version__ = "0.1.0"

__all__ = [
    "rms_norm",
    "fused_add_rms_norm",
    "layer_norm",
    "layer_norm_channels_first",
    "norm_gated",
    "layernorm_fn",
    "rmsnorm_fn",
    "RMSNorm",
    "GemmaRMSNorm",
    "LayerNormFP32",
    "LayerNorm2d",
    "RMSNormGated",
    "LayerNormGated",
    "reset",
]
