"""Tuning from a real run: an engine records the kinds of call it serves
(``NORMSWITCH_RECORD_CALLS``), ``normswitch tune --calls`` accepts the record and writes a
tuning file, and an engine started with that file (``NORMSWITCH_TUNED``) serves from it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from normswitch.ops import OPS
from normswitch.registry import REGISTRY
from normswitch.tune import record, tuning_file

from .conftest import REPO, engine_env, run_engine

pytestmark = pytest.mark.slow
VISION_AND_DECODER = {"rms_norm", "fused_add_rms_norm", "layer_norm", "layer_norm_channels_first"}


def test_recorded_engine_calls_are_tuned_and_served(checkpoint, tmp_path):
    calls = tmp_path / "calls.jsonl"
    run_engine(checkpoint, "image", tmp_path, engine_env(NORMSWITCH_RECORD_CALLS=str(calls)),
               max_tokens=2, name="record")
    entries = record.read(calls)
    assert VISION_AND_DECODER <= {e["op"] for e in entries}, sorted({e["op"] for e in entries})
    assert {e["device"] for e in entries} == {"cpu"}

    tuned = tmp_path / "tuned.yaml"
    proc = subprocess.run([sys.executable, "-m", "normswitch.cli", "tune", "--calls", str(calls), "--out",
                           str(tuned), "--warmup", "1", "--rep", "2", "--rounds", "1", "--no-progress"],
                          cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    loaded = tuning_file.load(tuned, "test", OPS, REGISTRY.names())
    table = loaded.table("cpu")
    assert table is not None, loaded.problems
    assert VISION_AND_DECODER <= {key[0] for key in table}
    assert {(e["op"], e["bucket"]) for e in entries} == {(key[0], key[-1]) for key in table}

    result = run_engine(checkpoint, "text", tmp_path, engine_env(NORMSWITCH_TUNED=str(tuned)),
                        max_tokens=2, name="tuned")
    selected = [k for k, v in result["metrics_after"].items()
                if k.startswith("normswitch_backend_selected{") and v == 1 and "op=rms_norm" in k]
    assert selected and all("bucket=all" not in k for k in selected), selected
