"""The triton backend on CPU under Triton's interpreter (no GPU needed): the triton tests of
``tests/ops`` in a child pytest started with ``TRITON_INTERPRET=1`` (the variable is read when
the kernels are decorated, and makes triton available for CPU tensors).

Two runs: ``registers``, every triton test of tests/ops with the launcher's real limits (the
rows of those small shapes stay in registers); ``looped``, with the limits lowered by the
``tests.triton.looped`` plugin so that the looped kernels serve the same shapes. The interpreter
runs each program in Python, so the looped run keeps to the generated cases and the flag grid in
bfloat16 (batch invariance of the looped kernels is checked on the GPU, tests/triton/test_triton_gpu.py).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = {
    "registers": ["-k", "triton"],
    "looped": ["-p", "tests.triton.looped", "-k", "triton and bfloat16 and (cases_forced or every_combination)"],
}


@pytest.mark.interpret
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
@pytest.mark.parametrize("run", RUNS)
def test_ops_under_the_interpreter(run):
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings",
           *RUNS[run], "tests/ops"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail  # 5 when nothing was selected: triton unavailable there
    summary = tail.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "deselected" in summary, tail
