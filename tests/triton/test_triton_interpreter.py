"""Runs ``interp_cases.py`` in a child pytest with ``TRITON_INTERPRET=1`` (CPU, no GPU needed).

The variable must be set before the kernels are decorated, so the cases run in their own process.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.interpret
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           str(Path(__file__).with_name("interp_cases.py"))]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail.split("\n")[-2], tail
