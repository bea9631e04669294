"""Run the tiny DeepSeek-OCR checkpoint once in a vLLM ``LLM`` engine and write what it saw as JSON.

One process per engine configuration, because vLLM and normswitch read their environment at
start. Usage: ``python -m integration_tests.engine_run --model DIR --kind text|image --out FILE``.
The JSON holds start and generation times, the token ids and text, the prompt tokens' logprobs,
the first sampled position's top logprobs, the norm modules of the model (by ``apply_model``,
which is why ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` is set) and the ``normswitch_*`` samples
before and after generation (read from this process's registry, which the plugin's metrics
bridge fills from the engine processes).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Optional

from integration_tests.model_probe import norm_modules

PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."


def _samples() -> dict[str, float]:
    from prometheus_client import REGISTRY

    out = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("normswitch_"):
            continue
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def settled_samples(timeout: float = 15.0) -> dict[str, float]:
    """The normswitch samples once two reads 1 s apart agree (children flush every 0.2-0.5 s)."""
    deadline = time.monotonic() + timeout
    last = _samples()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _samples()
        if now == last:
            return now
        last = now
    return last


def _prompt(kind: str) -> dict:
    if kind == "text":
        return {"prompt": PROMPT_TEXT}
    from normswitch.demo_model import OCR_PROMPT, make_image

    return {"prompt": OCR_PROMPT, "multi_modal_data": {"image": make_image()}}


def run(model: str, kind: str, dtype: str, max_tokens: int) -> dict:
    """Start the engine, generate once greedily, and return the observations."""
    from vllm import LLM, SamplingParams

    t0 = time.monotonic()
    llm = LLM(
        model=model,
        load_format="dummy",
        dtype=dtype,
        enforce_eager=True,
        max_model_len=1024,
        max_num_seqs=2,
        limit_mm_per_prompt={"image": 1},
        seed=0,
    )
    start_s = time.monotonic() - t0
    modules = llm.apply_model(norm_modules)[0]
    before = settled_samples()
    params = SamplingParams(
        max_tokens=max_tokens, temperature=0.0, logprobs=5, prompt_logprobs=1, ignore_eos=True
    )
    t1 = time.monotonic()
    out = llm.generate([_prompt(kind)], params, use_tqdm=False)[0]
    generate_s = time.monotonic() - t1
    after = settled_samples()
    completion = out.outputs[0]
    prompt_lp: list[Optional[float]] = [
        None if lp is None else lp[tok].logprob
        for tok, lp in zip(out.prompt_token_ids, out.prompt_logprobs or [])
    ]
    first = completion.logprobs[0] if completion.logprobs else {}
    return {
        "start_s": start_s,
        "generate_s": generate_s,
        "prompt_tokens": len(out.prompt_token_ids),
        "token_ids": list(completion.token_ids),
        "text": completion.text,
        "prompt_logprobs": prompt_lp,
        "first_logprobs": {str(k): v.logprob for k, v in first.items()},
        "modules": modules,
        "metrics_before": before,
        "metrics_after": after,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("NORMSWITCH", "VLLM_PLUGINS",
                                                                     "USE_NATIVE", "TRITON"))},
    }


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--kind", choices=("text", "image"), required=True)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = run(args.model, args.kind, args.dtype, args.max_tokens)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
