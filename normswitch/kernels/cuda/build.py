"""Just-in-time build of normswitch's own CUDA kernels (``csrc/``) through
``torch.utils.cpp_extension`` and ninja, on first use.

The build is cached on disk under ``$NORMSWITCH_CUDA_CACHE`` (default
``~/.cache/normswitch/cuda``), one directory per key: source hash, torch version, CUDA version
and the GPU architecture. A failed build is remembered for the process: every later use raises
the same :class:`CudaBuildError` at once, and :func:`problem` reports it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch

log = logging.getLogger("normswitch.cuda")

CSRC = Path(__file__).with_name("csrc")
SOURCES = ("bindings.cpp", "row_norm.cu", "row_norm_f32.cu", "row_norm_f16.cu", "row_norm_bf16.cu",
           "channels_first.cu")
HEADERS = ("launch.h", "common.cuh", "row_op.cuh", "row_norm.cuh")

_lock = threading.Lock()
_module: Optional[ModuleType] = None
_failure: Optional[str] = None


class CudaBuildError(RuntimeError):
    """The CUDA kernels cannot be built or loaded here; the message says why."""


def source_hash() -> str:
    """SHA-256 over the names and contents of every source and header."""
    h = hashlib.sha256()
    for name in (*SOURCES, *HEADERS):
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    return h.hexdigest()


def arch() -> str:
    """The current GPU's compute capability, e.g. ``"9.0"``."""
    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def build_name(gpu_arch: str) -> str:
    """Extension name for this source, torch, CUDA and architecture (a Python identifier)."""
    key = f"{source_hash()}|{torch.__version__}|{torch.version.cuda}|{gpu_arch}"
    return "normswitch_cuda_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def cache_root() -> Path:
    """Where builds are kept: ``$NORMSWITCH_CUDA_CACHE`` or ``$XDG_CACHE_HOME/normswitch/cuda``."""
    env = os.environ.get("NORMSWITCH_CUDA_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "normswitch" / "cuda"


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
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def problem() -> Optional[str]:
    """Why the kernels cannot be used (toolchain missing, or an earlier failed build), or None."""
    if _failure is not None:
        return _failure
    if _module is not None:
        return None
    return toolchain_problem()


def _compile(name: str, gpu_arch: str) -> ModuleType:
    from torch.utils import cpp_extension

    directory = cache_root() / name
    directory.mkdir(parents=True, exist_ok=True)
    cached = any(directory.glob(f"{name}*.so"))
    previous = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = gpu_arch
    start = time.perf_counter()
    try:
        module = cpp_extension.load(
            name=name,
            sources=[str(CSRC / s) for s in SOURCES],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3", "-lineinfo"],
            extra_include_paths=[str(CSRC)],
            build_directory=str(directory),
            verbose=False,
        )
    finally:
        if previous is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = previous
    seconds = time.perf_counter() - start
    how = "loaded cached build" if cached else "compiled"
    log.info("normswitch cuda: %s %s for sm_%s in %.1f s (%s)", how, name,
             gpu_arch.replace(".", ""), seconds, directory)
    return module


def load() -> ModuleType:
    """The compiled extension (built on the first call); raises :class:`CudaBuildError`."""
    global _module, _failure
    if _module is not None:
        return _module
    with _lock:
        if _module is not None:
            return _module
        if _failure is not None:
            raise CudaBuildError(_failure)
        reason = toolchain_problem()
        if reason is None and not torch.cuda.is_available():
            reason = "no CUDA device is visible"
        if reason is not None:
            _failure = reason
            raise CudaBuildError(reason)
        gpu_arch = arch()
        try:
            _module = _compile(build_name(gpu_arch), gpu_arch)
        except Exception as exc:
            text = str(exc).strip()
            _failure = f"compile failed: {type(exc).__name__}: {text[-1500:]}"
            log.warning("normswitch cuda: %s", _failure)
            raise CudaBuildError(_failure) from exc
        return _module


def reset() -> None:
    """Forget the loaded module and any remembered failure (tests)."""
    global _module, _failure
    with _lock:
        _module = None
        _failure = None
