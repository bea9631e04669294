"""A bad normswitch setting stops vLLM's OpenAI server at start-up: it exits non-zero before
``/health`` ever answers 200, and its output holds the one line that names the source, the key,
the bad value and the allowed values. The same settings make ``normswitch info`` and
``normswitch verify`` print that line and exit with status 2, without a traceback."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from normswitch.demo import Server, free_port, vision_dtype

from .conftest import engine_env

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 300


def _cases(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: {cpu: [native\n")
    return {
        "malformed YAML": ({"NORMSWITCH_CONFIG": str(bad)}, f"{bad}: malformed YAML"),
        "USE_NATIVE_LAYERNORM=yes": ({"USE_NATIVE_LAYERNORM": "yes"},
                                     "USE_NATIVE_LAYERNORM='yes': expected 0 or 1"),
        "unknown backend": ({"NORMSWITCH_BACKEND_RMS_NORM": "fast"},
                            "NORMSWITCH_BACKEND_RMS_NORM='fast': unknown backend; allowed: triton, cuda, cpu"),
        "missing file": ({"NORMSWITCH_CONFIG": str(tmp_path / "absent.yaml")},
                         f"NORMSWITCH_CONFIG='{tmp_path / 'absent.yaml'}': no such file"),
    }


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.parametrize("case", ["malformed YAML", "USE_NATIVE_LAYERNORM=yes", "unknown backend", "missing file"])
def test_server_refuses_to_start(case, checkpoint, tmp_path):
    settings, line = _cases(tmp_path)[case]
    env = engine_env(VLLM_ENABLE_V1_MULTIPROCESSING=None, **settings)
    srv = Server(str(checkpoint), free_port(), vision_dtype(), env, tmp_path / "server.log")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while srv.proc.poll() is None and time.monotonic() < deadline:
            assert not _healthy(srv.url), f"server reported healthy with {settings}"
            time.sleep(0.5)
    finally:
        srv.stop()
    log = srv.log.read_text(errors="replace")
    assert srv.proc.returncode not in (None, 0), f"exit status {srv.proc.returncode}:\n{log[-3000:]}"
    found = [ln for ln in log.splitlines() if "normswitch: invalid setting" in ln]
    assert found and line in found[0], log[-3000:]
    assert "Traceback" not in log.split(found[0])[0], "a traceback came before the setting's line"


@pytest.mark.parametrize("command", ["info", "verify"])
def test_cli_prints_the_line_and_exits_2(command, tmp_path):
    settings, line = _cases(tmp_path)["unknown backend"]
    out = subprocess.run([sys.executable, "-m", "normswitch.cli", command], capture_output=True, text=True,
                         env=engine_env(**settings), timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert line in out.stderr and "Traceback" not in out.stderr, out.stderr
