"""normswitch inside vLLM for CUDA (0.26 on the H200): the runs of ``gpu_runs`` checked.

The tiny DeepSeek-OCR (text and image prompts) and a dense decoder of hidden 4096 run in eager
mode (``enforce_eager``) and in vLLM's default compile mode (Inductor + CUDA graphs), with the
plugin and without it (``VLLM_PLUGINS=""``); the dense decoder also under each documented
backend switch. Eager mode shows the serving backend by normswitch's call counters; compile mode
by its backend gauges, the IR op priority, and the CUDA kernels of a profiled generation (CUDA
graph replays included). With an FP8 configuration, vLLM's RMSNorm+quant fusion still fires
with the plugin. The OpenAI server answers an image request and exports
``normswitch_*`` on its ``/metrics``. Set up vLLM on the GPU machine with
``scripts/gpu_vllm.sh``.
"""
from __future__ import annotations

import json
import math
import time

import pytest
import torch

from normswitch.demo import Server, free_port, ocr_request, wait_for_calls
from normswitch.demo.checkpoint import make_image

from . import gpu_runs
from .conftest import LOGPROB_ATOL, engine_env
from .dense_checkpoint import build_dense_checkpoint
from .gpu_runs import RUNS, result

pytestmark = [pytest.mark.gpu, pytest.mark.vllm,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
NORMSWITCH_KERNELS = ("_rownorm_", "_cf_", "row_norm_cached", "row_norm_stream", "channels_first_kernel")
"""Substrings of the CUDA kernel names of normswitch's triton and cuda backends."""
VLLM_RMS_KERNELS = ("rms_norm_kernel",)
DECODER_OPS = ("rms_norm", "fused_add_rms_norm")
SERVED_OPS = ("layer_norm", "layer_norm_channels_first", "rms_norm", "fused_add_rms_norm")
SERVER_ARGS = ["--gpu-memory-utilization", "0.05", "--kv-cache-memory-bytes", str(1 << 30)]


def _server_check(server: Server) -> dict:
    status, body = ocr_request(server.url, make_image("invoice 2026-12-03"), max_tokens=8)
    # The engine process's series reach the API server's /metrics through the plugin's bridge.
    return {"status": status, "body": body, "samples": wait_for_calls(server.url, SERVED_OPS, timeout=20.0)}


@pytest.fixture(scope="session")
def runs(checkpoint, tmp_path_factory) -> dict[str, dict]:
    """All engine runs and the server, side by side; ``{name: JSON}`` (``server``: its answers)."""
    out = gpu_runs.results_dir(tmp_path_factory)
    (out / "normswitch.yaml").write_text(gpu_runs.YAML_CONFIG)
    checkpoints = {"ocr": checkpoint, "dense": build_dense_checkpoint(out / "dense-4096")}
    deadline = time.monotonic() + gpu_runs.RUN_TIMEOUT_S
    server = Server(str(checkpoint), free_port(), "bfloat16",
                    engine_env(VLLM_ENABLE_V1_MULTIPROCESSING=None, **gpu_runs.GPU_ENV),
                    out / "server.log", extra=SERVER_ARGS)
    procs = {name: gpu_runs.start(name, run, checkpoints, out) for name, run in RUNS.items()}
    try:
        server.wait_ready(gpu_runs.RUN_TIMEOUT_S)
        served = _server_check(server)
    except Exception as exc:
        served = {"error": f"{type(exc).__name__}: {exc}\n{server.log_tail()}"}
    finally:
        server.stop()
    (out / "server.json").write_text(json.dumps(served, indent=1, default=str))
    results = gpu_runs.collect(procs, out, deadline)
    results["server"] = served
    return results


def _delta(kind: dict, metric: str, **labels: str) -> float:
    key = metric + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
    return kind["metrics_after"].get(key, 0.0) - kind["metrics_before"].get(key, 0.0)


def _calls(kind: dict, op: str) -> dict[str, float]:
    """``{backend: calls during this generation}`` of ``op`` on cuda."""
    out = {}
    for key in kind["metrics_after"]:
        if key.startswith("normswitch_calls_total{") and key.endswith(f"op={op}}}") and "device=cuda" in key:
            backend = key.split("backend=")[1].split(",")[0]
            value = _delta(kind, "normswitch_calls_total", backend=backend, device="cuda", op=op)
            if value:
                out[backend] = value
    return out


def _selected(run: dict, op: str) -> set[str]:
    after = next(iter(run["kinds"].values()))["metrics_after"]
    return {k.split("backend=")[1].split(",")[0] for k, v in after.items()
            if k.startswith("normswitch_backend_selected{") and f"op={op}}}" in k and "device=cuda" in k
            and v == 1.0}


def _kernels(run: dict, names: tuple[str, ...]) -> dict[str, int]:
    return {k: n for k, n in run["kernels"].items() if any(s in k for s in names)}


@pytest.mark.parametrize("model", ["ocr", "dense"])
def test_plugin_hooks_on_this_vllm(runs, model):
    """Every hook installed; only what this vLLM lacks is left out (0.26: LayerNorm is no CustomOp)."""
    import vllm

    plugin = result(runs, f"{model}-eager-on")["plugin"]
    assert not [h for h, outcome in plugin["hooks"].items() if outcome.startswith("failed")], plugin
    assert {"RMSNorm", "GemmaRMSNorm", "RMSNormGated"} <= set(plugin["replacements"]), plugin
    if vllm.__version__.startswith("0.26."):
        assert set(plugin["unhooked"]) >= {"LayerNorm"} and "not a CustomOp" in plugin["unhooked"]["LayerNorm"]
    assert "RMSNorm" not in plugin["unhooked"]
    assert result(runs, f"{model}-eager-off")["plugin"] == {}


@pytest.mark.parametrize("model", ["ocr", "dense"])
def test_eager_text_path_served_by_normswitch(runs, model):
    """Under enforce_eager the plugin lays the eager preset: vLLM's _C kernels through normswitch."""
    run = result(runs, f"{model}-eager-on")
    assert run["plugin"]["eager_preset"] is True and "preset cuda-eager.yaml" in run["plugin"]["config"], run["plugin"]
    assert result(runs, f"{model}-compile-on")["plugin"]["eager_preset"] is False
    decoder = {v for k, v in run["modules"].items() if not k.startswith(("sam_model.", "vision_model."))}
    assert decoder == {"normswitch.plugin.vllm.layers.NormswitchRMSNorm"}, decoder
    text = run["kinds"]["text"]
    for op in DECODER_OPS:
        served = _calls(text, op)
        assert set(served) == {"vllm_c"} and served["vllm_c"] > 0, (op, served)


def test_eager_image_path_served_by_normswitch(runs):
    run = result(runs, "ocr-eager-on")
    vision = {k: v for k, v in run["modules"].items() if k.startswith(("sam_model.", "vision_model."))}
    fp32 = [k for k, v in vision.items() if v == "normswitch.modules.LayerNormFP32"]
    norms_2d = [k for k, v in vision.items() if v == "normswitch.modules.LayerNorm2d"]
    assert len(fp32) + len(norms_2d) == len(vision) and len(norms_2d) == 2, vision
    image = run["kinds"]["image"]
    # The eager preset's device order: normswitch's CUDA kernels first.
    assert _calls(image, "layer_norm") == {"cuda": len(fp32)}
    assert _calls(image, "layer_norm_channels_first") == {"cuda": len(norms_2d)}


@pytest.mark.parametrize("model", ["ocr", "dense"])
def test_compile_mode_graph_runs_normswitch_kernels(runs, model):
    """Compile + CUDA graphs: the IR ops reach normswitch first, the gauges name triton, and the
    profiled generation (graph replays included) runs normswitch's kernels, not vLLM's."""
    on, off = result(runs, f"{model}-compile-on"), result(runs, f"{model}-compile-off")
    for op in DECODER_OPS:
        assert on["ir_priority"][op][0] == "normswitch", on["ir_priority"]
        assert "normswitch" not in off["ir_priority"][op]
        assert _selected(on, op) == {"triton"}, (op, _selected(on, op))
    ours = _kernels(on, NORMSWITCH_KERNELS)
    assert ours, sorted(on["kernels"])
    assert not _kernels(off, NORMSWITCH_KERNELS)
    assert not _kernels(on, VLLM_RMS_KERNELS), _kernels(on, VLLM_RMS_KERNELS)
    if model == "ocr":
        assert _calls(on["kinds"]["image"], "layer_norm") == {"triton": 73}
    print(f"[{model}] normswitch kernels: {ours}")


NORM_QUANT_PASS = "rmsnorm_quant_fusion_pass"
FUSED_NORM_QUANT_KERNELS = ("rms_norm_dynamic_per_token_quant",)
"""vLLM's fused RMSNorm + dynamic per-token FP8 quant kernel (what its fusion pass emits)."""


def test_fp8_norm_quant_fusion_not_defeated(runs):
    """FP8 (``--quantization fp8``, dynamic per-token activations on Hopper) in compile mode: with
    the plugin (its IR provider first), vLLM enables its RMSNorm+quant fusion pass and the graph
    runs vLLM's fused norm+quant kernel for every norm that feeds a quantized linear (2 layers x 2
    norms per step), normswitch's kernel for the rest (the final norm before the unquantized
    lm_head). Without the plugin vLLM leaves the pass off and Inductor fuses the norms into its
    own quant kernels: the plugin does not block either fusion."""
    on, off = result(runs, "fp8-compile-on"), result(runs, "fp8-compile-off")
    assert on["fusion"]["fuse_norm_quant"], on["fusion"]
    fused = sum(_kernels(on, FUSED_NORM_QUANT_KERNELS).values())
    ours = sum(_kernels(on, NORMSWITCH_KERNELS).values())
    assert fused >= 4 * ours > 0, (fused, ours, sorted(on["kernels"]))
    inductor = {k: n for k, n in off["kernels"].items() if "rms_norm" in k and "scaled_mm" in k}
    assert off["fusion"]["fuse_norm_quant"] or inductor, sorted(off["kernels"])
    print(f"[fp8] plugin on: {on['fusion']}, fused norm+quant launches {fused}, normswitch {ours}; "
          f"off: {off['fusion']}, Inductor norm+quant kernels {inductor}")


def _assert_agree(got: dict, want: dict, what: str) -> None:
    """Prompt and first-token logprobs within LOGPROB_ATOL; greedy tokens equal wherever the
    reference's top-2 margin exceeds it (compared up to the first allowed divergence)."""
    for i, (a, b) in enumerate(zip(got["prompt_logprobs"], want["prompt_logprobs"])):
        assert (a is None) == (b is None)
        if a is not None:
            assert math.isclose(a, b, abs_tol=LOGPROB_ATOL), f"{what}: prompt position {i}: {a} vs {b}"
    first, ref = got["step_logprobs"][0], want["step_logprobs"][0]
    common = set(first) & set(ref)
    assert len(common) >= 3, f"{what}: top tokens differ: {first} vs {ref}"
    for tok in common:
        assert math.isclose(first[tok], ref[tok], abs_tol=LOGPROB_ATOL), (what, tok, first, ref)
    for step, (a, b, top) in enumerate(zip(got["token_ids"], want["token_ids"], want["step_logprobs"])):
        best = sorted(top.values(), reverse=True)
        if a != b:
            assert best[0] - best[1] <= LOGPROB_ATOL, f"{what}: step {step}: {a} vs {b}, margin {best[0] - best[1]}"
            break


@pytest.mark.parametrize("mode", ["eager", "compile"])
@pytest.mark.parametrize("model,kind", [("ocr", "text"), ("ocr", "image"), ("dense", "text")])
def test_logprobs_agree_with_vllm_own_norms(runs, model, kind, mode):
    on, off = result(runs, f"{model}-{mode}-on"), result(runs, f"{model}-{mode}-off")
    spread = [lp for lp in off["kinds"][kind]["prompt_logprobs"] if lp is not None]
    assert max(spread) - min(spread) > 0.5, "logprobs too flat to tell backends apart"
    _assert_agree(on["kinds"][kind], off["kinds"][kind], f"{model}/{kind}/{mode}")


SWITCHES = {
    "dense-native": {"rms_norm": "native", "fused_add_rms_norm": "native"},
    "dense-cuda": {"rms_norm": "cuda", "fused_add_rms_norm": "cuda"},
    "dense-yaml": {"rms_norm": "vllm_c", "fused_add_rms_norm": "native"},
}


@pytest.mark.parametrize("name", list(SWITCHES))
def test_backend_switch_in_engine(runs, name):
    """USE_NATIVE_LAYERNORM=1, NORMSWITCH_BACKEND=cuda and a YAML file each pick the backend."""
    run, reference = result(runs, name), result(runs, "dense-eager-off")
    for op, backend in SWITCHES[name].items():
        served = _calls(run["kinds"]["text"], op)
        assert set(served) == {backend} and served[backend] > 0, (op, served)
        assert _selected(run, op) == {backend}
    _assert_agree(run["kinds"]["text"], reference["kinds"]["text"], name)


def test_openai_server_image_request_and_metrics(runs):
    served = runs["server"]
    assert "error" not in served, served.get("error")
    assert served["status"] == 200, served["body"]
    assert served["body"]["choices"][0]["message"]["content"], served["body"]
    names = {name for name, _, _ in served["samples"]}
    assert "normswitch_backend_selected" in names, names
    selected = {(labels["op"], labels["backend"]) for name, labels, v in served["samples"]
                if name == "normswitch_backend_selected" and labels["device"] == "cuda" and v == 1}
    assert {op for op, _ in selected} >= set(SERVED_OPS), selected
    calls = {labels["op"] for name, labels, v in served["samples"]
             if name == "normswitch_calls_total" and labels["device"] == "cuda" and v > 0}
    assert calls >= set(SERVED_OPS), calls
