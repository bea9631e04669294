"""Guards for the emulated-device tests: on the way to the kernel nothing CUDA-, Triton- or
CPU-only may run, and the kernel the registry selects gets emulated tensors only.

:func:`only_native` (an autouse fixture where it is imported) installs, for one test:

- ``torch.cuda`` entry points that fail the test when called;
- an import finder that fails the test on importing ``triton``, and (where an engine already
  imported it) Triton's kernel launch made to fail the test;
- every implementation of normswitch's other backends (``cpu``, ``triton``, ``cuda``,
  ``sgl_kernel``, ``vllm_c``) replaced by one that fails the test;
- the ``native`` implementations wrapped by :func:`checked`: each call is counted, its tensor
  arguments and results must be on the emulated device, the kernel must run ATen ops there and
  copy nothing back to the host.

A guard raises :class:`ForbiddenPath`, a ``BaseException``, so that no ``except Exception`` of
the code under test (the registry's fallback, an availability probe) can swallow it; every hit is
also recorded in :data:`VIOLATIONS`, which the fixture asserts empty at the end of the test.
"""
from __future__ import annotations

import functools
import importlib.abc
import inspect
import sys
from collections import Counter
from typing import Any, Callable

import pytest
import torch
from torch.utils._pytree import tree_leaves

from normswitch.ops import OPS
from normswitch.registry import REGISTRY

from . import emulated

VIOLATIONS: list[str] = []
NATIVE_CALLS: Counter = Counter()
"""Calls of the native implementation per op (counted by :func:`checked`)."""

CUDA_ENTRY_POINTS = ("is_available", "current_device", "device_count", "set_device", "synchronize",
                     "get_device_capability", "get_device_properties", "_lazy_init", "current_stream")
OTHER_BACKENDS = ("cpu", "triton", "cuda", "sgl_kernel", "vllm_c")


class ForbiddenPath(BaseException):
    """Code that must not run on the way to an emulated-device kernel was called."""


def _forbidden(what: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        VIOLATIONS.append(what)
        raise ForbiddenPath(f"{what} was called in a test on the emulated {emulated.NAME} device")

    call.__name__ = call.__qualname__ = f"forbidden_{what.replace('.', '_').replace(' ', '_')}"
    return call


class _NoTriton(importlib.abc.MetaPathFinder):
    """Fails the test on ``import triton`` (and its submodules) not already imported."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "triton" or name.startswith("triton."):
            _forbidden(f"import {name}")()
        return None


def _describe(t: torch.Tensor) -> str:
    return f"{type(t).__name__} on {t.device}"


def checked(op: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (the native kernel of ``op``) with its arguments, work and results checked."""
    names = tuple(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def run(*args: Any) -> Any:
        wrong = [f"{n}: {_describe(a)}" for n, a in zip(names, args)
                 if isinstance(a, torch.Tensor) and not emulated.on_device(a)]
        if wrong:
            _forbidden(f"native {op} with tensors off the emulated device ({', '.join(wrong)})")()
        NATIVE_CALLS[op] += 1
        before = emulated.WATCH.ops[op]
        with emulated.WATCH.inside(op):
            result = fn(*args)
        if emulated.WATCH.ops[op] == before:
            _forbidden(f"native {op} ran no ATen op on the emulated device")()
        wrong = [_describe(t) for t in tree_leaves(result)
                 if isinstance(t, torch.Tensor) and not emulated.on_device(t)]
        if wrong:
            _forbidden(f"native {op} returned tensors off the emulated device ({', '.join(wrong)})")()
        return result

    return run


def _triton_launchers() -> list[tuple[Any, str]]:
    """Triton's kernel-launch methods, where Triton is already imported (SGLang imports it)."""
    found = []
    for module_name, cls_names in (("triton.runtime.jit", ("JITFunction",)),
                                   ("triton.runtime.autotuner", ("Autotuner", "Heuristics"))):
        module = sys.modules.get(module_name)
        for cls_name in cls_names:
            cls = getattr(module, cls_name, None)
            if cls is not None and callable(getattr(cls, "run", None)):
                found.append((cls, f"{module_name}.{cls_name}.run"))
    return found


@pytest.fixture(autouse=True)
def only_native(monkeypatch):
    """Install the guards for one test; fail it if any was hit (even if the error was caught)."""
    VIOLATIONS.clear()
    emulated.WATCH.host_copies.clear()
    for op in OPS:  # load the backends before torch.cuda is guarded (their imports are cheap)
        for backend in OTHER_BACKENDS:
            impl = REGISTRY.impl(op, backend)
            if impl is not None:
                monkeypatch.setattr(impl, "fn", _forbidden(f"normswitch backend {backend!r} ({op})"))
        native = REGISTRY.impl(op, "native")
        monkeypatch.setattr(native, "fn", checked(op, native.fn))
    for name in CUDA_ENTRY_POINTS:
        if hasattr(torch.cuda, name):
            monkeypatch.setattr(torch.cuda, name, _forbidden(f"torch.cuda.{name}"))
    monkeypatch.setattr(sys, "meta_path", [_NoTriton(), *sys.meta_path])
    for cls, what in _triton_launchers():
        monkeypatch.setattr(cls, "run", _forbidden(what))
    REGISTRY.drop_plans()  # plans made before hold the unguarded functions
    yield
    REGISTRY.drop_plans()
    assert not VIOLATIONS, f"forbidden paths were taken: {VIOLATIONS}"
    assert not emulated.WATCH.host_copies, f"kernels copied to the host: {emulated.WATCH.host_copies}"
