"""Argument checks for the public ops: clear ``TypeError``/``ValueError`` naming the argument."""
from __future__ import annotations

import math
from typing import Optional

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_PARAM_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def tensor(name: str, t: object, min_dim: int = 1) -> torch.Tensor:
    """``t`` must be a float16/bfloat16/float32 tensor with at least ``min_dim`` dims."""
    if type(t) is torch.Tensor and t.dtype in FLOAT_DTYPES and t.dim() >= min_dim and t.size(-1):
        return t
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float16, bfloat16 or float32, got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{name}: expected at least {min_dim} dimension(s), got shape {tuple(t.shape)}")
    if t.shape[-1] == 0:
        raise ValueError(f"{name}: the last dimension is empty (shape {tuple(t.shape)})")
    return t


def param(name: str, p: Optional[object], n: int, x: torch.Tensor) -> Optional[torch.Tensor]:
    """An optional 1-D ``(n,)`` float parameter on ``x``'s device, made contiguous."""
    if p is None:
        return None
    if type(p) in _TENSOR_TYPES and p.dtype in _PARAM_DTYPES and p.shape == (n,) \
            and p.is_contiguous() and p.device == x.device:
        return p
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or None, got {type(p).__name__}")
    if p.dtype not in _PARAM_DTYPES:
        raise TypeError(f"{name}: expected a floating-point dtype, got {p.dtype}")
    if tuple(p.shape) != (n,):
        raise ValueError(f"{name}: expected shape ({n},) to match the normalized size, got {tuple(p.shape)}")
    same_device(name, p, x)
    return p if p.is_contiguous() else p.contiguous()


def same_device(name: str, t: torch.Tensor, x: torch.Tensor) -> None:
    if t.device != x.device:
        raise ValueError(f"{name}: expected a tensor on {x.device} like x, got one on {t.device}")


def like(name: str, t: Optional[object], x: torch.Tensor, dtype: Optional[torch.dtype] = None) -> Optional[torch.Tensor]:
    """An optional tensor of x's shape and device (and ``dtype`` when given)."""
    if t is None:
        return None
    if type(t) is torch.Tensor and t.dtype in FLOAT_DTYPES and t.shape == x.shape and t.device == x.device \
            and (dtype is None or t.dtype == dtype):
        return t
    tensor(name, t)
    if t.shape != x.shape:
        raise ValueError(f"{name}: expected shape {tuple(x.shape)} like x, got {tuple(t.shape)}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} like x, got {t.dtype}")
    same_device(name, t, x)
    return t


def eps(value: object) -> float:
    """``eps`` must be a finite, non-negative real number."""
    if type(value) is float and 0.0 <= value < math.inf:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"eps: expected a float, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"eps: expected a finite non-negative number, got {value}")
    return float(value)


def number(name: str, value: object) -> float:
    """A finite real number."""
    if type(value) is float and -math.inf < value < math.inf:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a finite float, got {value!r}")
    return float(value)


def group_size(value: object, n: int) -> int:
    """``group_size`` must be None (the whole row) or a positive int dividing ``n``."""
    if value is None:
        return n
    if type(value) is int and 0 < value <= n and n % value == 0:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"group_size: expected an int or None, got {type(value).__name__}")
    if value <= 0 or n % value != 0:
        raise ValueError(f"group_size: expected a positive divisor of the hidden size {n}, got {value}")
    return value


def rows(t: torch.Tensor) -> torch.Tensor:
    """A 2-D ``(M, N)`` view (or copy when no view exists) with unit stride along N."""
    if t.dim() == 2 and t.stride(1) == 1:
        return t
    r = t if t.dim() == 2 else t.reshape(-1, t.shape[-1])
    return r if r.stride(-1) == 1 or r.shape[-1] == 1 else r.contiguous()
