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


def like(name: str, t: Optional[object], x: torch.Tensor,
         dtype: Optional[torch.dtype] = None) -> Optional[torch.Tensor]:
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


def flag(name: str, value: object) -> bool:
    """A bool (an int 0 or 1 is taken as one)."""
    if type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name}: expected a bool, got {value!r}")


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



def _rows_of(t: torch.Tensor) -> Optional[tuple[int, int, int, int]]:
    """``(start, rows, row stride, row length)`` in elements when ``t`` is rows of packed
    elements at one stride (any 1-D or 2-D unit-stride tensor, or N-D rows that view as 2-D)."""
    if t.dim() == 0 or (t.stride(-1) != 1 and t.shape[-1] != 1):
        return None
    try:
        r = t.view(-1, t.shape[-1])
    except RuntimeError:
        return None
    return t.storage_offset(), r.shape[0], r.stride(0) if r.shape[0] > 1 else r.shape[1], r.shape[1]


def overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` share an element of memory. Exact for rows at one stride, such
    as two column blocks of one buffer; otherwise torch's memory-range test (which may say yes
    for interleaved tensors that share nothing)."""
    if not torch._C._overlaps(a, b):
        return False
    ra, rb = _rows_of(a), _rows_of(b)
    if ra is None or rb is None or a.element_size() != b.element_size() or ra[2] != rb[2] or ra[3] > ra[2] \
            or rb[3] > rb[2]:
        return True
    stride = ra[2]
    shift = (rb[0] - ra[0]) % stride  # where b's rows start within a's row period
    # b's columns [shift, shift + nb) and a's [0, na) on a circle of ``stride`` elements
    return shift < ra[3] or shift + rb[3] > stride


def own_memory(name: str, t: torch.Tensor) -> None:
    """A tensor written by the op must not have elements that share memory (stride 0, expand).
    Not checked while torch.compile traces (addresses are not known then)."""
    if not torch.compiler.is_compiling() and torch._debug_has_internal_overlap(t) == 1:
        raise ValueError(f"{name}: some of its elements share memory (an expanded or stride-0 tensor); "
                         "the op writes into it, pass a tensor with memory of its own")


def apart(name: str, t: torch.Tensor, others: dict[str, Optional[torch.Tensor]],
          alias_ok: tuple[str, ...] = ()) -> None:
    """``t`` (written by the op) must not overlap any of ``others`` (read by it), except that it
    may be exactly one of those named in ``alias_ok`` (the same elements: an in-place call).
    Not checked while torch.compile traces (addresses are not known then)."""
    if torch.compiler.is_compiling():
        return
    for other_name, o in others.items():
        if o is None or not overlaps(t, o):
            continue
        same = (other_name in alias_ok and t.data_ptr() == o.data_ptr() and t.shape == o.shape
                and t.stride() == o.stride())
        if not same:
            raise ValueError(f"{name}: overlaps {other_name} in memory; pass a separate tensor"
                             + (f" or {other_name} itself" if other_name in alias_ok else ""))
