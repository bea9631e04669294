"""One vLLM engine on the GPU for the GPU integration tests; writes what it saw as JSON.

Usage: ``python -m integration_tests.gpu_engine --model DIR --kinds text[,image] --mode
eager|compile --out FILE [--profile] [--weight-scale S] [--quantization fp8]``. ``compile`` is vLLM's default
(Inductor + CUDA graphs, capture sizes 1, 2, 4); ``eager`` is ``enforce_eager``. The engine runs
in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, executor ``uni``), so ``apply_model``, the
``normswitch_*`` samples, the plugin's hook outcomes and a torch profiler trace are read here.
Each engine takes little memory (``gpu_memory_utilization`` 0.05 for vLLM's start-up check, a
1 GiB KV cache) so that the tests run many engines side by side on one GPU.

The JSON holds, per prompt kind, the sampled tokens with each step's top logprobs, the prompt
tokens' logprobs and the samples before and after; and the norm modules, the plugin state, the
IR op priority in effect, what vLLM's compile-time fusion passes matched (compile mode) and,
with ``--profile``, the CUDA kernels of one short generation
(``{kernel name: launches}``; kernels replayed inside CUDA graphs are listed too).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Optional

import torch

from integration_tests.engine_run import meaningful_dummy_weights, normswitch_samples, prompt
from integration_tests.model_probe import norm_modules

KV_CACHE_BYTES = 1 << 30
CAPTURE_SIZES = [1, 2, 4]


def plugin_state() -> dict:
    """What the normswitch plugin did in this process (empty when it was not loaded)."""
    plugin = sys.modules.get("normswitch.plugin.vllm")
    if plugin is None:
        return {}
    layers = sys.modules.get("normswitch.plugin.vllm.layers")
    modes = sys.modules.get("normswitch.plugin.vllm.modes")
    from normswitch.registry import REGISTRY

    return {
        "hooks": dict(plugin._results),
        "eager_preset": modes._decided if modes else None,
        "config": REGISTRY.config.summary(),
        "unhooked": dict(layers.UNHOOKED) if layers else None,
        "replacements": sorted(layers.REPLACEMENTS) if layers else None,
    }


def _ir_priority(llm) -> Optional[dict]:
    try:
        priority = llm.llm_engine.vllm_config.kernel_config.ir_op_priority
    except AttributeError:
        return None
    return {op: list(getattr(priority, op) or []) for op in ("rms_norm", "fused_add_rms_norm")}


def _fusion(llm) -> Optional[dict]:
    """Whether vLLM enabled its RMSNorm+quant fusion pass, and the matches of every fusion pass
    of this process's compilations (``{pass name: matches}``)."""
    try:
        from vllm.compilation.passes.vllm_inductor_pass import get_match_table
        pass_config = llm.llm_engine.vllm_config.compilation_config.pass_config
    except (ImportError, AttributeError):
        return None
    return {"fuse_norm_quant": bool(pass_config.fuse_norm_quant), "matches": get_match_table()}


def _cuda_kernels(prof) -> dict[str, int]:
    out: dict[str, int] = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            out[event.name] = out.get(event.name, 0) + 1
    return out


def _generate(llm, kind: str, max_tokens: int) -> dict:
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, logprobs=5, prompt_logprobs=1,
                            ignore_eos=True, detokenize=False)
    before = normswitch_samples()
    t0 = time.monotonic()
    out = llm.generate([prompt(kind)], params, use_tqdm=False)[0]
    generate_s = time.monotonic() - t0
    completion = out.outputs[0]
    return {
        "generate_s": generate_s,
        "prompt_tokens": len(out.prompt_token_ids),
        "token_ids": list(completion.token_ids),
        "step_logprobs": [{str(k): v.logprob for k, v in step.items()} for step in completion.logprobs or []],
        "prompt_logprobs": [None if lp is None else lp[tok].logprob
                            for tok, lp in zip(out.prompt_token_ids, out.prompt_logprobs or [])],
        "metrics_before": before,
        "metrics_after": normswitch_samples(),
    }


def run(model: str, kinds: list[str], mode: str, dtype: str, max_tokens: int, profile: bool,
        weight_scale: float, quantization: Optional[str] = None) -> dict:
    """Start the engine, generate greedily once per kind (and once under the profiler).
    ``weight_scale`` 0 keeps vLLM's own dummy weights (quantized checkpoints)."""
    from vllm import LLM

    extra = {}
    if "image" in kinds:
        extra["limit_mm_per_prompt"] = {"image": 1}
    if mode == "compile":
        extra["compilation_config"] = {"cudagraph_capture_sizes": CAPTURE_SIZES}
    if quantization:
        extra["quantization"] = quantization
    weights = meaningful_dummy_weights(scale=weight_scale) if weight_scale else contextlib.nullcontext()
    t0 = time.monotonic()
    with weights:
        llm = LLM(model=model, load_format="dummy", dtype=dtype, enforce_eager=mode == "eager",
                  max_model_len=1024, max_num_seqs=4, gpu_memory_utilization=0.05,
                  kv_cache_memory_bytes=KV_CACHE_BYTES, distributed_executor_backend="uni", seed=0,
                  **extra)
    import vllm

    result = {"start_s": time.monotonic() - t0, "mode": mode, "vllm": vllm.__version__, "plugin": plugin_state(),
              "ir_priority": _ir_priority(llm), "fusion": _fusion(llm), "modules": llm.apply_model(norm_modules)[0]}
    result["kinds"] = {kind: _generate(llm, kind, max_tokens) for kind in kinds}
    if profile:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=3, temperature=0.0, ignore_eos=True, detokenize=False)
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        sync()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            llm.generate([prompt(kinds[0])], params, use_tqdm=False)
            sync()
        result["kernels"] = _cuda_kernels(prof)
    return result


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--kinds", default="text", help="comma-separated: text, image")
    parser.add_argument("--mode", choices=("eager", "compile"), default="eager")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--weight-scale", type=float, default=0.1)
    parser.add_argument("--quantization", default=None, help="vLLM's --quantization (fp8)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = run(args.model, args.kinds.split(","), args.mode, args.dtype, args.max_tokens,
                 args.profile, args.weight_scale, args.quantization)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
