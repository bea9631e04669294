"""Host time per eager call of vLLM's RMSNorm layer, with and without normswitch (CUDA vLLM).

What a decode step under ``--enforce-eager`` pays per norm: vLLM's own ``RMSNorm`` layer
(``forward_cuda`` through vLLM IR, outside an engine: on vLLM 0.26 this column measured far more
than the end-to-end runs allow for its cost inside the engine, so it is not the engine's path)
against normswitch's replacement ``NormswitchRMSNorm``
with each backend first (``NORMSWITCH_BACKEND``) and with the eager preset the plugin lays under
``enforce_eager`` (``configs/cuda-eager.yaml``); and, to split the layer's cost, the kernels'
own entry points called directly (``torch.ops._C``, the public op). Hidden 4096, bf16, M = 1 and
64, with and without the residual (the in-place fused add, as vLLM calls it), with vLLM's
environment cache on (as its engine core turns it on after start-up). Each number is the
median over 5 rounds (variants interleaved per round, so drift cancels) of a loop of 300
back-to-back calls in ``inference_mode``, synchronised at its end: host time per call where the
host, not the GPU, is the bottleneck.

Usage (GPU machine, vLLM set up with ``scripts/gpu_vllm.sh``):
``python -m benchmarks.vllm_layer_host [--json FILE]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any, Callable

import torch

import normswitch
from normswitch.config import use_preset
from normswitch.registry import REGISTRY

CALLS, ROUNDS, N, EPS = 300, 5, 4096, 1e-6
BACKENDS = ("triton", "cuda", "vllm_c")


def loop_us(fn: Callable[[], Any]) -> float:
    """Host us per call of :data:`CALLS` back-to-back calls (one sync at the end)."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(CALLS):
        fn()
    torch.cuda.synchronize()
    return 1e6 * (time.perf_counter() - t0) / CALLS


def configure(variant: str) -> None:
    """Select normswitch's backends for ``variant`` (``default``, ``preset`` or a backend name)."""
    os.environ.pop("NORMSWITCH_BACKEND", None)
    use_preset(None)
    if variant == "preset":
        from normswitch.plugin.vllm.modes import EAGER_PRESET, EAGER_WHY
        use_preset(EAGER_PRESET, EAGER_WHY)
    elif variant != "default":
        os.environ["NORMSWITCH_BACKEND"] = variant
    normswitch.reset()


def served() -> list[str]:
    """The first backend of each fast entry recorded since the last reset."""
    return sorted({f"{plan.call.op}: {plan.candidates[0][0]}" for _, (_, plan), _ in REGISTRY.fast.values()})


def calls(M: int) -> dict[str, Callable[[], Any]]:
    """The variants' call at M rows: with residual (in-place fused add) and without."""
    from vllm.model_executor.layers.layernorm import RMSNorm

    from normswitch.plugin.vllm.layers import NormswitchRMSNorm

    dev, dt = "cuda", torch.bfloat16
    vllm_layer = RMSNorm(N, eps=EPS).to(dev, dt)
    ns_layer = NormswitchRMSNorm(N, eps=EPS).to(dev, dt)
    with torch.no_grad():
        w = torch.randn(N, device=dev, dtype=dt)
        vllm_layer.weight.copy_(w)
        ns_layer.weight.copy_(w)
    x = torch.randn(M, N, device=dev, dtype=dt)
    r = torch.randn_like(x)
    c_ops = torch.ops._C
    print(f"  M={M}: vLLM layer runs {vllm_layer._forward_method.__name__}, "
          f"normswitch layer {ns_layer._forward_method.__name__}")
    return {
        "vllm layer (x, residual)": lambda: vllm_layer(x, r),
        "normswitch layer (x, residual)": lambda: ns_layer(x, r),
        "vllm layer (x)": lambda: vllm_layer(x),
        "normswitch layer (x)": lambda: ns_layer(x),
        "torch.ops._C.fused_add_rms_norm": lambda: c_ops.fused_add_rms_norm(x, r, w, EPS),
        "normswitch.fused_add_rms_norm(inplace=True)":
            lambda: normswitch.fused_add_rms_norm(x, r, w, EPS, inplace=True),
        "torch.empty_like + torch.ops._C.rms_norm": lambda: c_ops.rms_norm(torch.empty_like(x), x, w, EPS),
        "normswitch.rms_norm": lambda: normswitch.rms_norm(x, w, EPS),
    }


def measure(M: int) -> dict[str, Any]:
    """{variant: {call: median us}} and the backends that served each normswitch variant."""
    variants = ("default", *BACKENDS, "preset")
    times: dict[tuple[str, str], list[float]] = {}
    backends: dict[str, list[str]] = {}
    fns = calls(M)
    with torch.inference_mode():
        for _ in range(ROUNDS):
            for variant in variants:
                configure(variant)
                for name, fn in fns.items():
                    if "normswitch" not in name and variant != "default":
                        continue  # vLLM's own calls do not depend on normswitch's selection
                    for _ in range(20):
                        fn()
                    times.setdefault((variant, name), []).append(loop_us(fn))
                backends[variant] = served()
    configure("default")
    table: dict[str, dict[str, float]] = {}
    for (variant, name), ts in times.items():
        table.setdefault(variant, {})[name] = round(statistics.median(ts), 2)
    return {"us": table, "served": backends}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()
    import vllm
    from vllm import envs
    from vllm.config import CompilationConfig, VllmConfig, set_current_vllm_config
    from vllm.config.compilation import CompilationMode

    from normswitch.kernels.vllm_c import availability

    reason = availability("cuda")  # imports the vLLM library that registers torch.ops._C
    if reason is not None:
        raise SystemExit(f"vLLM's CUDA kernels are not available: {reason}")
    result: dict[str, Any] = {"torch": torch.__version__, "vllm": vllm.__version__,
                              "device": torch.cuda.get_device_name()}
    # As under enforce_eager: no compilation, every CustomOp on its platform path (forward_cuda),
    # and the IR op priority the platform sets for that mode (vLLM's _C kernels on CUDA).
    config = VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.NONE, custom_ops=["all"]))
    result["ir_op_priority"] = str(getattr(config, "kernel_config", None) and config.kernel_config.ir_op_priority)
    print(f"vLLM IR op priority: {result['ir_op_priority']}")
    if hasattr(envs, "enable_envs_cache"):
        envs.enable_envs_cache()  # as vLLM's engine core does once it has started
    with set_current_vllm_config(config):
        for M in (1, 64):
            result[f"M={M}"] = row = measure(M)
            print(f"-- M={M} N={N} bf16: host us per call (median of {ROUNDS} loops of {CALLS})")
            for variant, per_call in row["us"].items():
                for name, us in per_call.items():
                    print(f"  {variant:8s} {name:46s} {us:7.2f}")
            for variant, names in row["served"].items():
                print(f"  served ({variant}): {', '.join(names)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
