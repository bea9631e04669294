"""2d: vLLM's OpenAI-compatible server on 127.0.0.1 with the plugin (multiprocess engine).

A chat request carrying an image data URL gets HTTP 200 with text, and the server's own
``/metrics`` carries the ``normswitch_*`` series of the engine processes (through the plugin's
metrics bridge). The server is stopped at the end, also when the test fails.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from normswitch.demo import (
    Server,
    backend_table,
    free_port,
    ocr_request,
    vision_dtype,
    wait_for_calls,
)
from normswitch.demo.checkpoint import make_image

from .conftest import engine_env

pytestmark = pytest.mark.slow
SERVED_OPS = ("layer_norm", "layer_norm_channels_first", "rms_norm", "fused_add_rms_norm")


@pytest.fixture
def server(checkpoint, tmp_path) -> Iterator[Server]:
    env = engine_env(VLLM_ENABLE_V1_MULTIPROCESSING=None)
    srv = Server(str(checkpoint), free_port(), vision_dtype(), env, tmp_path / "server.log")
    try:
        print(f"[server] ready in {srv.wait_ready():.1f} s")
        yield srv
    finally:
        srv.stop()
        assert srv.proc.poll() is not None, "vLLM server still running after stop()"


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
