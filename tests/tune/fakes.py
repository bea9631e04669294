"""Backends of known speed for the tuning tests: each runs the native implementation and then
waits until its cost has passed, so which one is fastest per row bucket is known in advance."""
from __future__ import annotations

import inspect
import time
from typing import Callable, Optional

import torch

from normswitch.ops import OPS
from normswitch.registry import REGISTRY, register_impl


def _spin_until(end: float) -> None:
    while time.perf_counter() < end:
        pass


def timed(name: str, cost_us: Callable[[int], float], calls: list, wrong: bool = False,
          bound_us: Optional[Callable[[int], float]] = None) -> str:
    """Register backend ``name`` for every op: a call with M rows takes ``cost_us(M)`` plus the
    native time; ``wrong`` doubles the first output (fails the float64 check); with ``bound_us``
    the kernel has a bound form for the fast path (``fn.bind``) that takes ``bound_us(M)``
    instead. Returns the name."""
    def wrap(op: str, fn: Callable, cost_us: Callable[[int], float] = cost_us) -> Callable:
        def run(*args):
            start = time.perf_counter()
            calls.append((name, op))
            x = args[0]
            rows = x.shape[0] if x.dim() == 2 else x.numel() // x.shape[1]
            out = fn(*args)
            _spin_until(start + cost_us(rows) * 1e-6)
            if wrong:
                if isinstance(out, tuple):
                    out[0].mul_(2)
                else:
                    out = out * 2
            return out
        run.__signature__ = inspect.signature(fn)
        if bound_us is not None and cost_us is not bound_us:
            run.bind = lambda *args: wrap(op, fn, bound_us)
        return run

    for op in OPS:
        register_impl(op, name, wrap(op, REGISTRY.impl(op, "native").fn), available=lambda device: None)
    return name


def rows_of(n: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """An (n, 64) input and its weight."""
    return torch.randn(n, 64, dtype=dtype), torch.randn(64, dtype=dtype) + 1
