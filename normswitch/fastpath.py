"""The eager fast path: calls shaped like a call already validated and planned skip both steps.

A key holds everything the argument checks depend on (types, dtypes, devices, the normalized
size, each parameter's type, shape and layout, whether eps and offsets are in range). The first
call with a key goes the full way (checks, features, plan) and records the key with its plan in
``REGISTRY.fast``; later calls with the same key run that plan at once. Only untraced, 2-D,
contiguous, non-empty calls without ``out=`` or ``backend=`` take this path.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

_is_compiling = torch.compiler.is_compiling
INF = math.inf


def tracing() -> bool:
    """True under ``torch.compile`` tracing or a dispatch mode (fake tensors, ...)."""
    return _is_compiling() or _get_current_dispatch_mode() is not None


def param_key(p: Optional[torch.Tensor]) -> Optional[tuple]:
    """What the check of an optional (N,) parameter depends on."""
    return None if p is None else (type(p), p.dtype, p.shape, p.device, p.is_contiguous())
