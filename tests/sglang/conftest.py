"""SGLang plugin tests: SGLang 0.5.23 installed by scripts/install_sglang.sh, CPU tensors only."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from typing import Optional

import pytest
import torch
from prometheus_client import REGISTRY

import normswitch as ns


def sample(name: str, **labels: str) -> float:
    """The current value of a normswitch metric sample (0 when it has never been set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def calls(op: str, backend: Optional[str] = None, device: str = "cpu") -> float:
    """Eager calls of ``op`` counted for ``backend`` (None: any backend)."""
    if backend is not None:
        return sample("normswitch_calls_total", op=op, device=device, backend=backend)
    return sum(sample("normswitch_calls_total", op=op, device=device, backend=name)
               for name in ns.registry.REGISTRY.names())


@pytest.fixture(autouse=True)
def serving_without_grad():
    """SGLang runs its layers without grad mode (their parameters require grad): so do the tests;
    with grad mode on, normswitch would build a differentiable graph instead of calling a backend."""
    with torch.no_grad():
        yield


@pytest.fixture
def counting(monkeypatch):
    """Count eager normswitch calls (NORMSWITCH_COUNT_CALLS=1)."""
    monkeypatch.setenv("NORMSWITCH_COUNT_CALLS", "1")
    ns.reset()


@pytest.fixture(scope="session")
def sglang_plugin():
    """The plugin loaded the way SGLang loads it: its own ``load_plugins()`` reading our entry point."""
    pytest.importorskip("sglang", reason="SGLang is not installed (scripts/install_sglang.sh)")
    os.environ["SGLANG_PLUGINS"] = "normswitch"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sglang.srt.plugins import load_plugins

        load_plugins()
    from normswitch.plugin import sglang as plugin

    report = plugin.status()
    assert report is not None, (
        "SGLang's load_plugins() did not call normswitch: the entry point "
        "[sglang.srt.plugins] normswitch = normswitch.plugin.sglang:register is not installed"
    )
    return report


def run_python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (hooks are process-wide), capturing its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NORMSWITCH_", "SGLANG_PLUGINS"))}
    env["NORMSWITCH_COUNT_CALLS"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
