"""The ``triton`` backend: registers the Triton kernels of every op.

Importing this module never imports Triton: availability imports it on demand, and the kernel
modules (whose ``@triton.jit`` decorators read ``TRITON_INTERPRET``) load on the first call.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from typing import Callable, Optional

import torch

from normswitch.contracts import check_contract, contract_signature
from normswitch.registry import REGISTRY, Call, register_impl

GPU_DEVICES = ("cuda", "rocm", "xpu")
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_KERNEL_MODULE = {
    "rms_norm": "launch",
    "fused_add_rms_norm": "launch",
    "layer_norm": "launch",
    "norm_gated": "launch",
    "layer_norm_channels_first": "channels_first",
}


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1``: kernels run in Triton's interpreter on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _import_triton() -> Optional[str]:
    try:
        found = importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return "triton not installed (pip install 'normswitch[triton]')"
    try:
        importlib.import_module("triton.language")
    except Exception as exc:  # a broken install must not crash selection
        return f"triton failed to import: {type(exc).__name__}: {exc}"
    return None


@functools.lru_cache(maxsize=None)
def _gpu_reason(device_type: str) -> Optional[str]:
    if device_type in ("cuda", "rocm"):
        if not torch.cuda.is_available():
            return f"no {device_type} device visible to torch"
        if device_type == "cuda" and torch.version.hip is None:
            major, minor = torch.cuda.get_device_capability()
            if major < 7 or (major, minor) < (7, 5):
                return f"triton needs compute capability >= 7.5, device has {major}.{minor}"
    elif device_type == "xpu":
        if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
            return "no xpu device visible to torch"
    try:
        from triton.runtime import driver

        driver.active.get_current_target()
    except Exception as exc:
        return f"triton has no active driver for {device_type}: {type(exc).__name__}: {exc}"
    return None


def availability(device_type: str) -> Optional[str]:
    """None when Triton kernels can run on tensors of ``device_type``, else the reason."""
    if device_type == "cpu":
        if not interpreting():
            return "triton has no backend for cpu (set TRITON_INTERPRET=1 to use the interpreter)"
        return _import_triton()
    if device_type not in GPU_DEVICES:
        return f"triton has no backend for {device_type}"
    return _import_triton() or _gpu_reason(device_type)


def supports(call: Call) -> Optional[str]:
    """None when the kernels serve ``call``; any hidden size, group size and layout is served."""
    if call.dtype not in DTYPES:
        return f"dtype {call.dtype} not supported (float16, bfloat16, float32)"
    return None


def _impl(op: str) -> Callable:
    """A kernel-contract function that imports its kernel module on the first call."""
    loaded: list[Callable] = []

    def call(*args):
        if not loaded:
            module = importlib.import_module(f"{__name__}.{_KERNEL_MODULE[op]}")
            fn = getattr(module, op)
            check_contract(op, REGISTRY.contracts[op], fn, "triton")
            loaded.append(fn)
            REGISTRY.impls[op]["triton"].fn = fn  # later plans call the kernel directly
            REGISTRY.drop_plans()
        return loaded[0](*args)

    call.__name__ = call.__qualname__ = f"triton_{op}"
    call.__signature__ = contract_signature(REGISTRY.contracts[op])
    return call


def _details(op: str):
    def details(device_type: str) -> str:
        mode = "interpreter" if device_type == "cpu" else "compiled"
        return f"triton {mode}: {_KERNEL_MODULE[op]}.py"
    return details


for _name in _KERNEL_MODULE:
    register_impl(_name, "triton", _impl(_name), available=availability, supports=supports,
                  details=_details(_name))
