"""DeepSeek-OCR's vision norms served by normswitch inside vLLM.

vLLM builds SAM (``nn.LayerNorm`` in its blocks, ``deepencoder.LayerNorm2d`` in its neck) and
CLIP (``nn.LayerNorm``: ``pre_layrnorm`` and two per layer) from plain torch modules, which are
not CustomOps. ``NormswitchDeepseekOCRForCausalLM`` is registered under vLLM's architecture name
``DeepseekOCRForCausalLM``; after vLLM's constructor it swaps those modules for normswitch's
float32 ``LayerNormFP32`` and ``LayerNorm2d``, keeping parameter names, so weight loading (and
``load_format="dummy"``) work unchanged. The decoder's ``RMSNorm`` layers are CustomOps and are
served through ``normswitch.plugin.vllm_layers``.
"""
from __future__ import annotations

import torch
from torch import nn
from vllm.model_executor.models import deepencoder
from vllm.model_executor.models.deepseek_ocr import DeepseekOCRForCausalLM

from normswitch import modules

ARCHITECTURE = "DeepseekOCRForCausalLM"
VISION_TOWERS = ("sam_model", "vision_model")


def _layer_norm(old: nn.LayerNorm) -> modules.LayerNormFP32:
    new = modules.LayerNormFP32(
        old.normalized_shape,
        eps=old.eps,
        elementwise_affine=old.elementwise_affine,
        bias=old.bias is not None,
        device=old.weight.device if old.weight is not None else None,
        dtype=old.weight.dtype if old.weight is not None else None,
    )
    return new


def _layer_norm_2d(old: deepencoder.LayerNorm2d) -> modules.LayerNorm2d:
    return modules.LayerNorm2d(
        old.weight.shape[0], eps=old.eps, device=old.weight.device, dtype=old.weight.dtype
    )


def _replacement(module: nn.Module) -> nn.Module | None:
    if type(module) is nn.LayerNorm:
        return _layer_norm(module)
    if type(module) is deepencoder.LayerNorm2d:
        return _layer_norm_2d(module)
    return None


def swap_vision_norms(model: nn.Module) -> dict[str, int]:
    """Replace the vision towers' norms of ``model`` in place; returns counts by new class name.

    Parameters are copied, so the swap is also correct after weights were loaded.
    """
    counts: dict[str, int] = {}
    for tower_name in VISION_TOWERS:
        tower = getattr(model, tower_name, None)
        if tower is None:
            continue
        for parent in list(tower.modules()):
            for name, child in list(parent.named_children()):
                new = _replacement(child)
                if new is None:
                    continue
                with torch.no_grad():
                    for pname, param in child.named_parameters(recurse=False):
                        getattr(new, pname).copy_(param)
                new.train(child.training)
                setattr(parent, name, new)
                counts[type(new).__name__] = counts.get(type(new).__name__, 0) + 1
    return counts


class NormswitchDeepseekOCRForCausalLM(DeepseekOCRForCausalLM):
    """vLLM's DeepSeek-OCR with its SAM and CLIP norms replaced by normswitch modules."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.normswitch_vision_norms = swap_vision_norms(self)
