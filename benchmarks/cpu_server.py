"""End to end on CPU: vLLM's OpenAI server with the tiny DeepSeek-OCR of ``make demo``, with
normswitch and without it (``VLLM_PLUGINS=""``), measured in one run.

    python benchmarks/cpu_server.py [--rounds 6] [--concurrency 32] [--max-tokens 64] [--out FILE.md]

Both servers run at once (``--max-num-seqs`` = the concurrency, eager mode, random weights, the
same checkpoint), each warmed up with one text and one image request. Each round sends, to one
server and then the other (the order alternates per round), ``--concurrency`` concurrent text
completions of ``--max-tokens`` tokens (output tokens per second of the batch) and one image
request (seconds). Only the server being measured has work, so a neighbour's load falls on both
settings alike over the rounds; every round is reported, with the medians and ranges. Call
counting stays off (``NORMSWITCH_COUNT_CALLS=0``): counting bypasses the fast path.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from normswitch.demo import MODEL_NAME, Server, free_port, ocr_request, vision_dtype
from normswitch.demo.checkpoint import build_checkpoint, make_image

PROMPT = "The quick brown fox jumps over the lazy dog. " * 4
SETTINGS = {"normswitch": {}, "without (VLLM_PLUGINS=\"\")": {"VLLM_PLUGINS": ""}}


def completion(url: str, max_tokens: int) -> int:
    """One text completion of exactly ``max_tokens`` tokens; returns the completion tokens."""
    body = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0.0,
            "ignore_eos": True}
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())["usage"]["completion_tokens"]


def text_batch(url: str, concurrency: int, max_tokens: int) -> float:
    """Output tokens per second of ``concurrency`` concurrent completions."""
    with ThreadPoolExecutor(concurrency) as pool:
        t0 = time.monotonic()
        tokens = sum(pool.map(lambda _: completion(url, max_tokens), range(concurrency)))
        return tokens / (time.monotonic() - t0)


def image_request(url: str, text: str) -> float:
    """Seconds for one OCR request with a generated image."""
    t0 = time.monotonic()
    status, body = ocr_request(url, make_image(text), 16)
    if status != 200:
        raise RuntimeError(f"image request failed: HTTP {status}: {body}")
    return time.monotonic() - t0


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--dtype", default=None, help="model dtype (default: the demo's choice)")
    ap.add_argument("--out", default=None, help="write the markdown table here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="normswitch-cpu-server-"))
    checkpoint = build_checkpoint(work / "deepseek-ocr-tiny")
    dtype = args.dtype or vision_dtype()
    base = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "NORMSWITCH_COUNT_CALLS": "0"}
    results: dict[str, dict[str, list[float]]] = {name: {"tok": [], "img": []} for name in SETTINGS}
    lines = [f"vllm-cpu OpenAI server, tiny DeepSeek-OCR ({dtype}, random weights), {platform.machine()}, "
             f"{os.cpu_count()} CPUs, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"both servers up at once; per round, {args.concurrency} concurrent text requests of "
             f"{args.max_tokens} tokens and one image request to each", "",
             "| round | setting | text tokens/s | image request s |", "|---|---|---|---|"]
    print(lines[0], flush=True)
    servers = {}
    try:
        for i, (name, extra) in enumerate(SETTINGS.items()):
            servers[name] = Server(str(checkpoint), free_port(), dtype, {**base, **extra}, work / f"server-{i}.log",
                                   max_num_seqs=args.concurrency)
        for server in servers.values():
            server.wait_ready()
            completion(server.url, 4)
            image_request(server.url, "warm up")
        for rnd in range(1, args.rounds + 1):
            order = list(SETTINGS) if rnd % 2 else list(SETTINGS)[::-1]
            for name in order:
                url = servers[name].url
                results[name]["tok"].append(text_batch(url, args.concurrency, args.max_tokens))
                results[name]["img"].append(image_request(url, f"normswitch {rnd}"))
                line = f"| {rnd} | {name} | {results[name]['tok'][-1]:.0f} | {results[name]['img'][-1]:.2f} |"
                print(line, flush=True)
                lines.append(line)
    finally:
        for server in servers.values():
            server.stop()
    lines += ["", "| setting | text tokens/s: median (range) | image request s: median (range) |", "|---|---|---|"]
    for name, r in results.items():
        tok, img = sorted(r["tok"]), sorted(r["img"])
        lines.append(f"| {name} | **{statistics.median(tok):.0f}** ({tok[0]:.0f}-{tok[-1]:.0f}) | "
                     f"**{statistics.median(img):.2f}** ({img[0]:.2f}-{img[-1]:.2f}) |")
    print("\n".join(lines[-4:]), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
