"""The engine runs of the GPU integration tests, started side by side on one GPU.

Every run is its own process (``integration_tests.gpu_engine``) with its own environment, since
vLLM and normswitch read their settings at start; all of them and the OpenAI server start at
once and share the GPU (each engine takes a 1 GiB KV cache), so the whole set costs about the
time of its slowest member. Logs and JSON files go to one folder (``NORMSWITCH_GPU_RESULTS``,
else a temporary one) that the device script brings back.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from .conftest import REPO, engine_env

RUN_TIMEOUT_S = float(os.environ.get("NORMSWITCH_GPU_RUN_TIMEOUT", "420"))
"""Seconds the whole set of runs may take (they run side by side)."""
DENSE_WEIGHT_SCALE = 0.1 * (128 / 4096) ** 0.5
"""The tiny model's weight scale (0.1 at hidden 128) scaled by 1/sqrt(hidden): logits of the same spread."""
GPU_ENV = {"VLLM_USE_FLASHINFER_SAMPLER": "0", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
           "VLLM_DISABLE_COMPILE_CACHE": "1"}
"""vLLM's offline settings; no compile cache, so that no run loads a graph another run compiled."""
YAML_CONFIG = """\
on_unavailable: fallback
devices:
  cuda:
    ops:
      rms_norm: {backends: [vllm_c, native]}
      fused_add_rms_norm: {backends: [native]}
"""


@dataclass
class Run:
    """One engine: the checkpoint (``ocr`` or ``dense``), the mode, the environment overrides and
    vLLM's ``quantization`` (its own dummy weights then: they are quantized after loading)."""

    model: str
    mode: str
    env: dict[str, Optional[str]] = field(default_factory=dict)
    profile: bool = False
    quantization: Optional[str] = None

    @property
    def kinds(self) -> str:
        return "text,image" if self.model == "ocr" else "text"


OFF = {"VLLM_PLUGINS": ""}
RUNS = {
    "ocr-eager-on": Run("ocr", "eager"),
    "ocr-eager-off": Run("ocr", "eager", OFF),
    "ocr-compile-on": Run("ocr", "compile", profile=True),
    "ocr-compile-off": Run("ocr", "compile", OFF, profile=True),
    "dense-eager-on": Run("dense", "eager"),
    "dense-eager-off": Run("dense", "eager", OFF),
    "dense-compile-on": Run("dense", "compile", profile=True),
    "dense-compile-off": Run("dense", "compile", OFF, profile=True),
    "dense-native": Run("dense", "eager", {"USE_NATIVE_LAYERNORM": "1"}),
    "dense-cuda": Run("dense", "eager", {"NORMSWITCH_BACKEND": "cuda"}),
    "dense-yaml": Run("dense", "eager", {"NORMSWITCH_CONFIG": "{yaml}"}),
    "fp8-compile-on": Run("dense", "compile", profile=True, quantization="fp8"),
    "fp8-compile-off": Run("dense", "compile", OFF, profile=True, quantization="fp8"),
}


def results_dir(tmp_path_factory) -> Path:
    """Where the runs' logs and JSON go."""
    if os.environ.get("NORMSWITCH_GPU_RESULTS"):
        path = Path(os.environ["NORMSWITCH_GPU_RESULTS"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("gpu-runs")


def start(name: str, run: Run, checkpoints: dict[str, Path], out: Path) -> subprocess.Popen:
    """Start one engine process; its JSON is ``out/name.json``, its log ``out/name.log``."""
    env = {k: str(out / "normswitch.yaml") if v == "{yaml}" else v for k, v in run.env.items()}
    scale = 0.0 if run.quantization else DENSE_WEIGHT_SCALE if run.model == "dense" else 0.1
    cmd = [sys.executable, "-m", "integration_tests.gpu_engine", "--model", str(checkpoints[run.model]),
           "--kinds", run.kinds, "--mode", run.mode, "--weight-scale", f"{scale:.6g}",
           "--out", str(out / f"{name}.json")] + (["--profile"] if run.profile else [])
    if run.quantization:
        cmd += ["--quantization", run.quantization]
    log = open(out / f"{name}.log", "w")
    return subprocess.Popen(cmd, cwd=REPO, env=engine_env(**GPU_ENV, **env), stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def collect(procs: dict[str, subprocess.Popen], out: Path, deadline: float) -> dict[str, dict]:
    """Wait for every run; ``{name: JSON}``, or ``{"error": log tail}`` for a run that failed."""
    results = {}
    for name, proc in procs.items():
        try:
            proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        path = out / f"{name}.json"
        if proc.returncode == 0 and path.exists():
            results[name] = json.loads(path.read_text())
        else:
            tail = "".join((out / f"{name}.log").read_text(errors="replace").splitlines(keepends=True)[-30:])
            results[name] = {"error": f"exit {proc.returncode}:\n{tail}"}
    return results


def result(runs: dict[str, dict], name: str) -> dict:
    """The JSON of run ``name``; fails the test with the run's log tail when it did not finish."""
    got = runs[name]
    if "error" in got:
        pytest.fail(f"engine run {name!r} failed: {got['error']}")
    return got
