"""Functions sent into vLLM's worker with ``LLM.apply_model`` (importable there by this name)."""
from __future__ import annotations

from torch import nn


def norm_modules(model: nn.Module) -> dict[str, str]:
    """``{module path: module.ClassName}`` for every norm module of ``model``."""
    return {
        name: f"{type(m).__module__}.{type(m).__qualname__}"
        for name, m in model.named_modules()
        if "Norm" in type(m).__name__ and name
    }
