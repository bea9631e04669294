"""How the CPU kernels (``csrc/``) are compiled: flags for this CPU's vector capability, the
cache key, and the toolchain check. Built on first use (or ahead of time by ``normswitch build``),
cached under ``$NORMSWITCH_CPU_CACHE`` (default ``~/.cache/normswitch/cpu``), see
``normswitch.kernels.jit``."""
from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Optional

import torch

from ..jit import Extension, ninja_problem

_CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
    "AVX2": ["-mavx2", "-mfma", "-mf16c"],
}


def capability() -> str:
    """The vector instruction set the kernels are built for: ATen's own choice on this CPU."""
    found = torch.backends.cpu.get_cpu_capability()
    if found.startswith("AVX512") and platform.machine() in ("x86_64", "AMD64"):
        return "AVX512"
    return "AVX2" if found == "AVX2" else "DEFAULT"


def flags() -> dict:
    """``cpp_extension.load`` flags for this CPU's vector capability."""
    cap = capability()
    cflags = ["-O3", "-fopenmp", "-ffp-contract=off", f"-DCPU_CAPABILITY={cap}"]
    if cap != "DEFAULT":
        cflags += [f"-DCPU_CAPABILITY_{cap}", *_CAPABILITY_FLAGS[cap]]
    return {"extra_cflags": cflags, "extra_ldflags": ["-fopenmp"]}


def key() -> str:
    """What besides the sources decides the binary: torch version, machine and capability."""
    return f"{torch.__version__}|{platform.machine()}|{capability()}"


def toolchain_problem() -> Optional[str]:
    """None when a build can be attempted (a C++ compiler and ninja), else why not."""
    from torch.utils import cpp_extension

    compiler = cpp_extension.get_cxx_compiler()
    if shutil.which(compiler) is None:
        return f"no C++ compiler: {compiler!r} not found (install g++, or set CXX)"
    return ninja_problem()


EXTENSION = Extension(
    prefix="normswitch_cpu",
    csrc=Path(__file__).with_name("csrc"),
    sources=("bindings.cpp", "rms_norm.cpp", "rms_norm_avx512.cpp", "norm_gated.cpp", "raw_calls.cpp",
             "layer_norm.cpp"),
    common_sources=("fast_key.cpp",),
    headers=("norms.h", "simd_rows.h", "vec_io.h"),
    cache_variable="NORMSWITCH_CPU_CACHE",
    kind="cpu",
    flags=flags,
    key=key,
    toolchain_problem=toolchain_problem,
)
