"""2d: vLLM's OpenAI-compatible server on 127.0.0.1 with the plugin (multiprocess engine).

A chat request carrying an image data URL gets HTTP 200 with text, the server's own
``/metrics`` carries the ``normswitch_*`` series of the engine processes (through the plugin's
metrics bridge), and the server log holds normswitch's lines in vLLM's format (time, process
tag) from the API server and the engine process. The server is stopped at the end, also when
the test fails.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from normswitch.demo import (
    Server,
    backend_table,
    ocr_request,
    wait_for_calls,
)
from normswitch.demo.checkpoint import make_image

from .conftest import openai_server

pytestmark = pytest.mark.slow
SERVED_OPS = ("layer_norm", "layer_norm_channels_first", "rms_norm", "fused_add_rms_norm")


@pytest.fixture
def server(checkpoint, tmp_path) -> Iterator[Server]:
    with openai_server(checkpoint, tmp_path, "server") as srv:
        yield srv


def test_chat_with_image_and_metrics(server):
    status, body = ocr_request(server.url, make_image("invoice 2026-11-22"), max_tokens=8)
    assert status == 200, f"{body}\n{server.log_tail()}"
    text = body["choices"][0]["message"]["content"]
    assert isinstance(text, str) and text, body
    assert body["usage"]["completion_tokens"] == 8

    samples = wait_for_calls(server.url, SERVED_OPS)
    print(backend_table(samples))
    calls = {labels["op"]: v for name, labels, v in samples
             if name == "normswitch_calls_total" and labels["device"] == "cpu"}
    assert set(SERVED_OPS) <= set(calls), calls
    selected = {(labels["op"], labels["backend"]) for name, labels, v in samples
                if name == "normswitch_backend_selected" and v == 1}
    assert {op for op, _ in selected} >= set(SERVED_OPS), selected

    log = server.log.read_text(errors="replace").splitlines()
    vllm_format = re.compile(r"^\((?P<proc>[\w]+) pid=\d+\) (INFO|WARNING) \d\d-\d\d \d\d:\d\d:\d\d ")
    ours = [(m.group("proc"), line) for line in log if "normswitch" in line and (m := vllm_format.match(line))]
    procs = {proc for proc, _ in ours}
    assert any("normswitch: settings from" in line for _, line in ours), "\n".join(log[-60:])
    served = [(proc, line) for proc, line in ours if re.search(r"normswitch: rms_norm on cpu served by '\w+'", line)]
    assert served and any(proc != "APIServer" for proc, _ in served), "\n".join(line for _, line in ours)
    assert len(procs) >= 2, procs  # the API server and the engine core each log in vLLM's format
    if any("normswitch cpu:" in line for line in log):
        assert any(re.search(r"normswitch cpu: (loaded|compiled) .* \(?[\d.]+ s", line) for _, line in ours)
    assert not [line for line in log if line.startswith(("WARNING:normswitch", "INFO:normswitch"))]
