"""CPU CI check of the own CUDA sources: the kernels go through nvcc's front end (PTX, no
GPU needed) and the torch bindings through g++ -fsyntax-only against torch's headers."""
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from normswitch.kernels import jit
from normswitch.kernels.cuda import build


def _nvcc():
    found = shutil.which("nvcc")
    if found:
        return found
    for home in ("/usr/local/cuda",):
        if Path(home, "bin", "nvcc").exists():
            return str(Path(home, "bin", "nvcc"))
    return None


NVCC = _nvcc()


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
@pytest.mark.parametrize("source", [s for s in build.SOURCES if s.endswith(".cu")])
def test_kernels_compile_to_ptx(source, tmp_path):
    cmd = [NVCC, "-std=c++17", "-O0", "-Xcicc", "-O0", "-gencode=arch=compute_90,code=compute_90",
           "--ptx", str(build.CSRC / source), "-o", str(tmp_path / "out.ptx")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ptx = (tmp_path / "out.ptx").read_text()
    assert ".target sm_90" in ptx


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None or shutil.which("g++") is None, reason="needs nvcc and g++")
def test_bindings_syntax(tmp_path):
    from torch.utils.cpp_extension import include_paths

    # CPU wheels of torch lack this CMake-generated header of c10/cuda; an empty one suffices.
    stub = tmp_path / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    (stub / "cuda_cmake_macros.h").write_text("#pragma once\n")
    cuda_include = Path(NVCC).resolve().parent.parent / "include"
    cmd = ["g++", "-std=c++17", "-fsyntax-only", "-DTORCH_EXTENSION_NAME=normswitch_check",
           f"-I{tmp_path}", f"-I{jit.COMMON}", *(f"-I{p}" for p in include_paths()),
           f"-I{cuda_include}", "-I/usr/local/cuda/include",
           f"-I{sysconfig.get_paths()['include']}", str(build.CSRC / "bindings.cpp")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
