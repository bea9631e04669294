"""SGLang's DeepSeek-OCR and DeepSeek-OCR 2 vision towers with their norms served by normswitch.

SGLang's ``srt/models/deepseek_ocr.py`` builds the towers of both models (``is_ocr2_config``
picks them) with module-level functions: ``build_sam_vit_b`` (SAM: ``torch.nn.LayerNorm``,
``LayerNorm2d``), ``build_clip_l`` (CLIP-L: ``torch.nn.LayerNorm``; DeepSeek-OCR) and
``build_qwen2_decoder_as_encoder`` (the Qwen2 decoder as vision encoder: transformers'
``Qwen2RMSNorm``; DeepSeek-OCR 2). :func:`build_tower` is an AROUND hook for those functions: it
builds the tower with SGLang's code, then swaps its norms (``normswitch.plugin.swap``) for
normswitch's ``LayerNormFP32`` (float32 math, as the model's own ``LayerNormfp32``),
``LayerNorm2d`` and ``RMSNorm``, keeping parameter names, so SGLang's weight loading is unchanged.
"""
from __future__ import annotations

import importlib
import logging
from typing import Callable

from torch import nn

from .. import swap

log = logging.getLogger(__name__)

OCR_MODULE = "sglang.srt.models.deepseek_ocr"
BUILDERS = ("build_sam_vit_b", "build_clip_l", "build_qwen2_decoder_as_encoder")
"""The tower builders of ``OCR_MODULE`` that are hooked (each one this SGLang has)."""

SWAPS: tuple[tuple[str, str, swap.Factory], ...] = (
    ("torch.nn", "LayerNorm", swap.layer_norm_fp32),
    (OCR_MODULE, "LayerNorm2d", swap.layer_norm_2d),
    ("transformers.models.qwen2.modeling_qwen2", "Qwen2RMSNorm", swap.rms_norm),
)
"""(module, class, factory) for each norm class the towers are built from."""
_logged: set[str] = set()


def factories() -> dict[type, swap.Factory]:
    """``{class: factory}`` for the classes of :data:`SWAPS` this installation has (a missing
    one is logged once)."""
    out = {}
    for module_name, class_name, factory in SWAPS:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except Exception as exc:
            if class_name not in _logged:
                _logged.add(class_name)
                log.info("normswitch: %s.%s is not swapped: %s: %s", module_name, class_name,
                         type(exc).__name__, exc)
            continue
        out[cls] = factory
    return out


def build_tower(original: Callable[..., nn.Module], *args, **kwargs) -> nn.Module:
    """AROUND hook of a tower builder: SGLang's tower with its norms swapped for normswitch's."""
    tower = original(*args, **kwargs)
    try:
        counts = swap.swap_modules(tower, factories())
    except Exception as exc:  # a tower whose norms changed stays SGLang's: the model must run
        log.warning("normswitch: %s left to SGLang's norms: %s: %s",
                    getattr(original, "__name__", "tower"), type(exc).__name__, exc)
        return tower
    log.debug("normswitch: %s norms swapped: %s", getattr(original, "__name__", "tower"), counts)
    return tower
