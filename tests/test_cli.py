"""``normswitch info`` and ``normswitch verify``."""
import json
import shutil
import subprocess
import sys

import normswitch as ns
from normswitch.cli import main
from normswitch.kernels import cpu


def test_info_json_lists_every_op_backend_and_source(capsys, monkeypatch):
    monkeypatch.setenv("NORMSWITCH_BACKEND_LAYER_NORM", "native")
    ns.reset()
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "torch" in data["versions"] and "cpu" in data["platform"]["device_types"]
    assert set(data["ops"]) == {"rms_norm", "fused_add_rms_norm", "layer_norm", "layer_norm_channels_first", "norm_gated"}
    rms = data["ops"]["rms_norm"]
    assert rms["backends"]["native"]["cpu"]["available"] is True
    assert rms["backends"]["triton"]["cpu"]["available"] is False and rms["backends"]["triton"]["cpu"]["reason"]
    assert rms["selection"]["cpu"]["chosen_bf16_n4096"] == ("cpu" if cpu.EXTENSION.problem() is None else "native")
    assert rms["selection"]["cpu"]["order_source"].startswith("built-in default (default.yaml)")
    assert data["ops"]["layer_norm"]["selection"]["cpu"]["order_source"] == "env NORMSWITCH_BACKEND_LAYER_NORM"


def test_info_text_and_metrics(capsys):
    assert main(["info", "--metrics"]) == 0
    out = capsys.readouterr().out
    assert "rms_norm" in out and "unavailable:" in out
    served = "cpu" if cpu.EXTENSION.problem() is None else "native"
    assert f'normswitch_backend_selected{{backend="{served}",bucket="all",device="cpu",op="layer_norm"}} 1.0' in out


def test_verify_passes(capsys):
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "0 mismatches" in out and "norm_gated" in out


def test_console_script_is_installed():
    exe = shutil.which("normswitch") or str(__import__("pathlib").Path(sys.executable).with_name("normswitch"))
    done = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "layer_norm_channels_first" in done.stdout
