"""The ``cuda`` backend: normswitch's own CUDA C++ kernels (``csrc/``, see ``own``), built on
first use (``build``). Importing this module is cheap and works without CUDA or nvcc.

sgl-kernel's and vLLM's CUDA norms are backends of their own (``sgl_kernel``, ``vllm_c``).
"""
from __future__ import annotations

from typing import Optional

import torch

from ...registry import Call, register_impl
from . import build, own


def device_problem(device_type: str) -> Optional[str]:
    """None when ``device_type`` is an NVIDIA CUDA device torch can use, else why not."""
    if device_type == "rocm" or torch.version.hip is not None:
        return "ROCm/HIP: the CUDA kernels here are not hipified; use the triton backend"
    if device_type != "cuda":
        return f"serves CUDA devices only, not {device_type!r}"
    if torch.version.cuda is None:
        return "torch is a CPU-only build (torch.version.cuda is None)"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    return None


def availability(device_type: str) -> Optional[str]:
    """None when the own kernels can be built or are loaded, else why not."""
    return device_problem(device_type) or build.problem()


def supports(call: Call) -> Optional[str]:
    if call.dtype not in own.DTYPES:
        return f"{call.dtype} (float32/float16/bfloat16 only)"
    return None


def _details(device_type: str) -> str:
    state = "loaded" if build.EXTENSION.module is not None else "built or loaded on first use"
    return f"own CUDA kernels, {state}"


for _name, _fn in own.IMPLS.items():
    register_impl(_name, "cuda", _fn, available=availability, supports=supports, details=_details)
