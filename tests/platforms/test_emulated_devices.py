"""normswitch run for real on npu and gcu devices emulated by PyTorch's PrivateUse1 backend.

PyTorch renames PrivateUse1 once per process, so each device type runs ``device_cases.py`` and
``engine_cases.py`` in a child pytest of its own (``EMULATED_DEVICE_TYPE=npu`` / ``gcu``). Both
children start together (most of their time is importing vLLM and SGLang); each test here
waits for its own and passes when every case there passed. Skips and expected failures in a
child are passed on as warnings, with their reasons.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEVICE_TYPES = ("npu", "gcu")
TIMEOUT_S = 300
_CLEARED = ("NORMSWITCH_", "USE_NATIVE_LAYERNORM", "TRITON_INTERPRET", "SGLANG_PLUGINS", "VLLM_PLUGINS")


def _start(device_type: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    env.update(EMULATED_DEVICE_TYPE=device_type, PYTHONDONTWRITEBYTECODE="1",
               OMP_NUM_THREADS="1")  # two children side by side on a small machine
    cmd = [sys.executable, "-m", "pytest", "-q", "-rsxX", "-p", "no:cacheprovider",
           str(HERE / "device_cases.py"), str(HERE / "engine_cases.py")]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """One child pytest per device type, all started at once: ``{device type: (process, log)}``."""
    logs = tmp_path_factory.mktemp("emulated")
    started = {}
    for device_type in DEVICE_TYPES:
        log = logs / f"{device_type}.log"
        started[device_type] = (_start(device_type, log), log)
    yield started
    for proc, _ in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("device_type", DEVICE_TYPES)
def test_emulated_device(children, device_type):
    proc, log = children[device_type]
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = log.read_text()
    tail = text[-8000:]
    assert proc.returncode == 0, f"the {device_type} cases failed (exit {proc.returncode}):\n{tail}"
    summary = text.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary), tail
    assert not re.search(r"\b\d+ (failed|errors?|xpassed)\b", summary), tail
    for line in text.splitlines():
        if line.startswith(("SKIPPED", "XFAIL", "XPASS")):
            warnings.warn(f"emulated {device_type}: {line}", stacklevel=1)
