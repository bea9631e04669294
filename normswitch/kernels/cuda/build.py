"""How normswitch's own CUDA kernels (``csrc/``) are built: on first use, through
``torch.utils.cpp_extension`` and ninja (see ``normswitch.kernels.jit``), or ahead of time by
``normswitch build`` on a machine with the GPU.

Cached on disk under ``$NORMSWITCH_CUDA_CACHE`` (default ``~/.cache/normswitch/cuda``), keyed by
source hash, torch version, CUDA version and the GPU architecture. A failed build is remembered
for the process: every later use raises the same :class:`CudaBuildError` at once, and
:func:`problem` reports it.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch

from ..jit import BuildError, Extension, ninja_problem

CSRC = Path(__file__).with_name("csrc")
SOURCES = ("bindings.cpp", "row_norm.cu", "row_norm_f32.cu", "row_norm_f16.cu", "row_norm_bf16.cu",
           "channels_first.cu")
HEADERS = ("launch.h", "common.cuh", "row_op.cuh", "row_norm.cuh")


class CudaBuildError(BuildError):
    """The CUDA kernels cannot be built or loaded here; the message says why."""


def arch() -> str:
    """The current GPU's compute capability, e.g. ``"9.0"``."""
    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def toolchain_problem() -> Optional[str]:
    """None when a build can be attempted (CUDA torch, nvcc, ninja), else why not."""
    if torch.version.hip is not None:
        return "ROCm/HIP torch: the kernels use CUDA-only headers and are not hipified"
    if torch.version.cuda is None:
        return "torch is a CPU-only build (torch.version.cuda is None)"
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None or not (
        Path(cpp_extension.CUDA_HOME, "bin", "nvcc").exists() or shutil.which("nvcc")
    ):
        return "no CUDA compiler: nvcc not found (set CUDA_HOME)"
    return ninja_problem()


def _build_problem() -> Optional[str]:
    reason = toolchain_problem()
    if reason is None and not torch.cuda.is_available():
        reason = "no CUDA device is visible"
    return reason


EXTENSION = Extension(
    prefix="normswitch_cuda",
    csrc=CSRC,
    sources=SOURCES,
    headers=HEADERS,
    cache_variable="NORMSWITCH_CUDA_CACHE",
    kind="cuda",
    flags=lambda: {"extra_cflags": ["-O3"], "extra_cuda_cflags": ["-O3", "-lineinfo"]},
    key=lambda: f"{torch.__version__}|{torch.version.cuda}|{arch()}",
    toolchain_problem=lambda: _build_problem(),
    build_env=lambda: {"TORCH_CUDA_ARCH_LIST": arch()},
    error=CudaBuildError,
)


def problem() -> Optional[str]:
    """Why the kernels cannot be used (toolchain missing, or an earlier failed build), or None.
    Availability is checked without a visible device: only a build needs one."""
    if EXTENSION.failure is not None:
        return EXTENSION.failure
    return None if EXTENSION.module is not None else toolchain_problem()


def load() -> ModuleType:
    """The compiled extension (built on the first call); raises :class:`CudaBuildError`."""
    return EXTENSION.module or EXTENSION.load()


def reset() -> None:
    """Forget the loaded module and any remembered failure (tests)."""
    EXTENSION.reset()
