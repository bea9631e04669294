"""Run a tiny DeepSeek-OCR (or OCR 2) checkpoint once in a vLLM ``LLM`` engine and write what it saw as JSON.

One process per engine configuration, because vLLM and normswitch read their environment at
start. Usage: ``python -m integration_tests.engine_run --model DIR --kind text|image|image,text --out FILE``
(several kinds: one generation each, in order, in the same engine).
The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, executor ``uni``), so
``apply_model`` and the ``normswitch_*`` samples are read directly; the OpenAI-server test covers
the multiprocess engine and the plugin's metrics bridge.

vLLM's dummy weights are uniform in +-1e-3, which makes every logit ~1e-5 and every logprob
-ln(vocab): useless for comparing backends. :func:`meaningful_dummy_weights` re-draws the language
model's weights (seeded, before vLLM packs them): norm weights ``1 + U(-0.1, 0.1)``, all others
``U(-0.1, 0.1)``, so logits spread by about one nat and norm differences show in the logprobs.

The JSON holds the start time, the model's norm modules and, per prompt kind (``runs``), the
generation time, the token ids and text, the prompt tokens' logprobs, the first sampled position's
top logprobs and the ``normswitch_*`` samples before and after that generation.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from typing import Iterator, Optional

import torch

from integration_tests.model_probe import norm_modules

PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."


def normswitch_samples() -> dict[str, float]:
    """``{series{labels}: value}`` of every ``normswitch_*`` sample in this process."""
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


@contextlib.contextmanager
def meaningful_dummy_weights(scale: float = 0.1, seed: int = 0) -> Iterator[None]:
    """While active, vLLM's dummy loader gives the language model weights of a useful scale."""
    from vllm.model_executor.model_loader.dummy_loader import DummyModelLoader

    original = DummyModelLoader.load_weights

    def load_weights(self, model, model_config) -> None:
        original(self, model, model_config)
        language_model = getattr(model, "language_model", model)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _, module in sorted(language_model.named_modules()):
                is_norm = "Norm" in type(module).__name__
                for _, p in sorted(module.named_parameters(recurse=False)):
                    u = (torch.rand(p.shape, generator=gen) * 2 - 1) * scale
                    p.copy_((1.0 + u) if is_norm else u)

    DummyModelLoader.load_weights = load_weights
    try:
        yield
    finally:
        DummyModelLoader.load_weights = original


def prompt(kind: str) -> dict:
    """The request of one ``kind``: a text prompt, or the OCR prompt with the test image."""
    if kind == "text":
        return {"prompt": PROMPT_TEXT}
    from normswitch.demo.checkpoint import OCR_PROMPT, make_image

    return {"prompt": OCR_PROMPT, "multi_modal_data": {"image": make_image()}}


def _generate(llm, kind: str, max_tokens: int) -> dict:
    """One greedy generation of the ``kind`` prompt and the ``normswitch_*`` samples around it."""
    from vllm import SamplingParams

    before = normswitch_samples()
    params = SamplingParams(
        max_tokens=max_tokens, temperature=0.0, logprobs=5, prompt_logprobs=1, ignore_eos=True
    )
    t1 = time.monotonic()
    out = llm.generate([prompt(kind)], params, use_tqdm=False)[0]
    generate_s = time.monotonic() - t1
    after = normswitch_samples()
    completion = out.outputs[0]
    prompt_lp: list[Optional[float]] = [
        None if lp is None else lp[tok].logprob
        for tok, lp in zip(out.prompt_token_ids, out.prompt_logprobs or [])
    ]
    first = completion.logprobs[0] if completion.logprobs else {}
    return {
        "generate_s": generate_s,
        "prompt_tokens": len(out.prompt_token_ids),
        "token_ids": list(completion.token_ids),
        "text": completion.text,
        "prompt_logprobs": prompt_lp,
        "first_logprobs": {str(k): v.logprob for k, v in first.items()},
        "metrics_before": before,
        "metrics_after": after,
    }


def run(model: str, kinds: list[str], dtype: str, max_tokens: int,
        custom_ops: Optional[list[str]] = None, ir_providers: Optional[list[str]] = None) -> dict:
    """Start the engine, generate once greedily per prompt kind (in order), return the observations.

    ``custom_ops`` is vLLM's ``compilation_config.custom_ops`` (e.g. ``["all", "-RMSNorm"]``);
    ``ir_providers`` the user's IR op priority for ``rms_norm`` and ``fused_add_rms_norm``."""
    from vllm import LLM

    extra = {}
    if custom_ops:
        extra["compilation_config"] = {"custom_ops": custom_ops}
    if ir_providers:
        extra["ir_op_priority"] = {"rms_norm": ir_providers, "fused_add_rms_norm": ir_providers}

    t0 = time.monotonic()
    with meaningful_dummy_weights():
        llm = LLM(
            model=model,
            load_format="dummy",
            dtype=dtype,
            enforce_eager=True,
            max_model_len=1024,
            max_num_seqs=2,
            limit_mm_per_prompt={"image": 1},
            distributed_executor_backend="uni",
            seed=0,
            **extra,
        )
    start_s = time.monotonic() - t0
    modules = llm.apply_model(norm_modules)[0]
    return {
        "start_s": start_s,
        "modules": modules,
        "runs": {kind: _generate(llm, kind, max_tokens) for kind in kinds},
        "env": {k: v for k, v in os.environ.items() if k.startswith(("NORMSWITCH", "VLLM_PLUGINS",
                                                                     "USE_NATIVE", "TRITON"))},
    }


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--kind", required=True, help="text, image, or both comma-separated")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--custom-ops", default="", help="comma-separated vLLM custom_ops")
    parser.add_argument("--ir-providers", default="", help="comma-separated IR op priority")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    kinds = args.kind.split(",")
    if not kinds or set(kinds) - {"text", "image"}:
        parser.error(f"--kind: expected text and/or image, got {args.kind!r}")
    custom_ops = [op for op in args.custom_ops.split(",") if op]
    providers = [p for p in args.ir_providers.split(",") if p]
    result = run(args.model, kinds, args.dtype, args.max_tokens, custom_ops, providers)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
