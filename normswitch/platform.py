"""Device-type detection: the key by which backends are chosen."""
from __future__ import annotations

import torch

DEVICE_TYPES = ("cuda", "rocm", "cpu", "npu", "gcu", "xpu", "mps")
"""Device types the config knows; any other device type is served by ``native``."""

_IS_HIP = bool(getattr(torch.version, "hip", None))


def device_type(device: torch.device) -> str:
    """The normswitch device type of a torch device: ``cuda`` on ROCm builds is ``rocm``."""
    kind = device.type
    if kind == "cuda" and _IS_HIP:
        return "rocm"
    return kind


def tensor_device_type(t: torch.Tensor) -> str:
    """``device_type`` of a tensor's device, with a fast path for CPU tensors."""
    return "cpu" if t.is_cpu else device_type(t.device)


def _accelerator_available(name: str) -> bool:
    module = getattr(torch, name, None)
    is_available = getattr(module, "is_available", None)
    try:
        return bool(is_available()) if callable(is_available) else False
    except Exception:  # a vendor runtime that cannot start is simply absent
        return False


def present_device_types() -> list[str]:
    """Device types usable in this process, ``cpu`` always first."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("rocm" if _IS_HIP else "cuda")
    for name in ("xpu", "npu", "gcu", "mps"):
        if name == "mps":
            if torch.backends.mps.is_available():
                found.append(name)
        elif _accelerator_available(name):
            found.append(name)
    return found
