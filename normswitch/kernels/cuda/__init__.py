"""The ``cuda`` backend: sgl-kernel, vLLM's ``_C`` ops, then normswitch's own CUDA kernels.

Providers are tried per call in order (``$NORMSWITCH_CUDA_PROVIDERS``, a comma-separated list
of ``sgl-kernel``, ``vllm``, ``own``, overrides the default order): the first one importable
here whose conditions the call meets serves it (see ``sgl``, ``vllm_c``, ``own``). Importing
this module is cheap and works without CUDA, sgl-kernel, vLLM or nvcc: providers are probed
on the first call and the own kernels are compiled on their first use (``build``).
"""
from __future__ import annotations

import os
from typing import Any, Optional

import torch

from ...backend import OPS, Backend, Call
from . import build, own, sgl, vllm_c
from .provider import Entry, Provider

DEFAULT_ORDER = (sgl.NAME, vllm_c.NAME, own.NAME)
OWN = Provider(own.NAME, {op: Entry(fn) for op, fn in own.IMPLS.items()}, build.problem,
               cache=False)
PROVIDERS = {p.name: p for p in (sgl.PROVIDER, vllm_c.PROVIDER, OWN)}


class NoProviderError(RuntimeError):
    """No CUDA provider accepts a call (the registry then falls back to the next backend)."""


def order() -> tuple[str, ...]:
    """Provider names in the order they are tried."""
    env = os.environ.get("NORMSWITCH_CUDA_PROVIDERS")
    if not env:
        return DEFAULT_ORDER
    names = tuple(n.strip() for n in env.split(",") if n.strip())
    unknown = [n for n in names if n not in PROVIDERS]
    if unknown:
        raise ValueError(f"NORMSWITCH_CUDA_PROVIDERS: unknown provider(s) {unknown}; "
                         f"allowed: {', '.join(PROVIDERS)}")
    return names


def chain(op: str) -> list[tuple[str, Entry]]:
    """The usable providers of ``op`` here, in order."""
    return [(name, PROVIDERS[name].entries[op]) for name in order()
            if op in PROVIDERS[name].entries and PROVIDERS[name].check() is None]


class _Dispatch:
    """The backend's impl of one op: the first provider whose ``accepts`` takes the call."""

    def __init__(self, op: str) -> None:
        self.op = op
        self.entries: Optional[list[tuple[str, Entry]]] = None

    def __call__(self, *args: Any) -> Any:
        if self.entries is None:
            self.entries = chain(self.op)
        for _, entry in self.entries:
            if entry.accepts is None or entry.accepts(*args):
                return entry.fn(*args)
        names = ", ".join(n for n, _ in self.entries) or "none usable"
        raise NoProviderError(f"no CUDA provider accepts this {self.op} call ({names})")


IMPLS = {op: _Dispatch(op) for op in OPS}


def reset() -> None:
    """Re-probe providers and forget build failures (tests, or after installing a package)."""
    for p in PROVIDERS.values():
        p.reset()
    build.reset()
    for impl in IMPLS.values():
        impl.entries = None


def _device_problem(device_type: str) -> Optional[str]:
    if device_type == "rocm" or torch.version.hip is not None:
        return ("ROCm/HIP: sgl-kernel, vLLM _C and the own kernels here are CUDA builds "
                "(not hipified); use the triton backend")
    if device_type != "cuda":
        return f"serves CUDA devices only, not {device_type!r}"
    if torch.version.cuda is None:
        return "torch is a CPU-only build (torch.version.cuda is None)"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    return None


def availability(device_type: str) -> Optional[str]:
    """None when some provider can serve on ``device_type``, else every provider's reason."""
    reason = _device_problem(device_type)
    if reason is not None:
        return reason
    problems = {name: PROVIDERS[name].check() for name in order()}
    if all(r is not None for r in problems.values()):
        return "; ".join(f"{n}: {r}" for n, r in problems.items())
    return None


def supports(call: Call) -> Optional[str]:
    """None when some usable provider may take calls like ``call``, else why none does."""
    if call.dtype not in own.DTYPES:
        return f"{call.dtype} (float32/float16/bfloat16 only)"
    reasons = []
    for name, entry in chain(call.op):
        why = entry.declines(call)
        if why is None:
            return None
        reasons.append(f"{name}: {why}")
    return "; ".join(reasons) or f"no usable CUDA provider has {call.op}"


def details(op: str, device_type: str) -> str:
    """Which provider serves ``op`` and why each other one does not (``normswitch info``)."""
    reason = _device_problem(device_type)
    if reason is not None:
        return reason
    parts, serving = [], None
    for name in order():
        p = PROVIDERS[name]
        entry = p.entries.get(op)
        why = "has no such op" if entry is None else p.check()
        if why is None and serving is None:
            serving = name
            cond = f" when {entry.conditions}" if entry.conditions else ""
            parts.append(f"{name}: serves{cond}")
        elif why is None:
            parts.append(f"{name}: takes calls the providers before it decline")
        else:
            parts.append(f"{name}: {why}")
    head = f"served by {serving}" if serving else "no provider"
    return f"{head} ({'; '.join(parts)})"


BACKEND = Backend(name="cuda", impls=dict(IMPLS), availability=availability,
                  supports=supports, details=details)
