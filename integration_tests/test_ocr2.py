"""DeepSeek-OCR 2 inside vLLM: every norm of the model served by normswitch.

Three engines (each runs an image prompt, then a text-only prompt): the plugin as installed,
``USE_NATIVE_LAYERNORM=1``, and the plugin excluded (``VLLM_PLUGINS=""``, vLLM's own norms, the
reference); plus the OpenAI server answering an image request. The norms are counted from the
model's modules: SAM's LayerNorms (normswitch ``LayerNormFP32``) and neck (``LayerNorm2d``), the
Qwen2 encoder's RMSNorms and the decoder's (vLLM's ``RMSNorm`` CustomOp, normswitch's replacement).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from normswitch.demo import Server, backend_table, ocr_request, wait_for_calls
from normswitch.demo.checkpoint import make_image

from .conftest import RMS_BACKEND, assert_logprobs_close, calls_by_backend, engine_env, openai_server, run_engine

pytestmark = pytest.mark.slow
MAX_TOKENS = 4
KINDS = "image,text"
LAYER_NORM = "normswitch.modules.LayerNormFP32"
LAYER_NORM_2D = "normswitch.modules.LayerNorm2d"
VLLM_RMSNORM = "normswitch.plugin.vllm.layers.NormswitchRMSNorm"
OPS = ("layer_norm", "layer_norm_channels_first", "rms_norm", "fused_add_rms_norm")


@pytest.fixture(scope="module")
def plugin(checkpoint_ocr2, tmp_path_factory) -> dict:
    return run_engine(checkpoint_ocr2, KINDS, tmp_path_factory.mktemp("ocr2-plugin"), engine_env(),
                      max_tokens=MAX_TOKENS, name="ocr2-plugin")


@pytest.fixture(scope="module")
def excluded(checkpoint_ocr2, tmp_path_factory) -> dict:
    result = run_engine(checkpoint_ocr2, KINDS, tmp_path_factory.mktemp("ocr2-excluded"),
                        engine_env(VLLM_PLUGINS=""), max_tokens=MAX_TOKENS, name="ocr2-excluded")
    for kind, run in result["runs"].items():
        assert not run["metrics_after"], f"{kind}: normswitch metrics although the plugin was excluded"
    return result


@pytest.fixture(scope="module")
def native(checkpoint_ocr2, tmp_path_factory) -> dict:
    return run_engine(checkpoint_ocr2, KINDS, tmp_path_factory.mktemp("ocr2-native"),
                      engine_env(USE_NATIVE_LAYERNORM="1"), max_tokens=MAX_TOKENS, name="ocr2-native")


def _of(modules: dict[str, str], prefix: str) -> dict[str, str]:
    return {k: v for k, v in modules.items() if k.startswith(prefix)}


def expected_calls(modules: dict[str, str]) -> dict[str, dict[str, int]]:
    """``{kind: {op: calls}}`` from the model's norm modules. An image prompt runs the vision
    towers once (the 320x240 image needs no crops): each SAM norm and each Qwen2-encoder norm
    once. Every forward step runs the decoder: layer 0's input norm without a residual
    (``rms_norm``), every other decoder norm with one (``fused_add_rms_norm``)."""
    sam = _of(modules, "sam_model.").values()
    encoder = len(_of(modules, "qwen2_model."))
    decoder = len(_of(modules, "language_model."))
    text = {"layer_norm": 0, "layer_norm_channels_first": 0, "rms_norm": MAX_TOKENS,
            "fused_add_rms_norm": (decoder - 1) * MAX_TOKENS}
    image = {**text, "layer_norm": sum(v == LAYER_NORM for v in sam),
             "layer_norm_channels_first": sum(v == LAYER_NORM_2D for v in sam),
             "rms_norm": encoder + MAX_TOKENS}
    return {"image": image, "text": text}


def test_every_norm_module_is_normswitch(plugin, excluded):
    modules = plugin["modules"]
    # The same module paths as vLLM's own model: the swap keeps names, so weights load unchanged.
    assert set(modules) == set(excluded["modules"])
    assert set(_of(modules, "sam_model.").values()) == {LAYER_NORM, LAYER_NORM_2D}
    assert sorted(k for k, v in modules.items() if v == LAYER_NORM_2D) == ["sam_model.neck.1", "sam_model.neck.3"]
    assert {"sam_model.blocks.0.norm1", "sam_model.blocks.0.norm2"} <= set(_of(modules, "sam_model."))
    encoder = _of(modules, "qwen2_model.")
    layers = {k.split(".layers.")[1].split(".")[0] for k in encoder if ".layers." in k}
    assert len(encoder) == 2 * len(layers) + 1 and layers, encoder  # two per layer and the final norm
    assert set(encoder.values()) == {VLLM_RMSNORM}
    assert set(_of(modules, "language_model.").values()) == {VLLM_RMSNORM}
    assert not set(modules) - set(_of(modules, "sam_model.")) - set(encoder) - set(_of(modules, "language_model."))
    assert set(_of(excluded["modules"], "qwen2_model.").values()) == {
        "transformers.models.qwen2.modeling_qwen2.Qwen2RMSNorm"}


@pytest.mark.parametrize("kind", ["image", "text"])
def test_every_norm_call_served_by_normswitch(kind, plugin):
    run = plugin["runs"][kind]
    assert len(run["token_ids"]) == MAX_TOKENS
    expected = expected_calls(plugin["modules"])[kind]
    backends = {"layer_norm": RMS_BACKEND, "layer_norm_channels_first": RMS_BACKEND,
                "rms_norm": RMS_BACKEND, "fused_add_rms_norm": RMS_BACKEND}
    served = {op: calls_by_backend(run, op) for op in OPS}
    assert served == {op: ({backends[op]: n} if n else {}) for op, n in expected.items()}


def test_use_native_layernorm_switches_every_norm(native):
    for kind, expected in expected_calls(native["modules"]).items():
        served = {op: calls_by_backend(native["runs"][kind], op) for op in OPS}
        assert served == {op: ({"native": n} if n else {}) for op, n in expected.items()}, kind


@pytest.mark.parametrize("kind", ["image", "text"])
def test_logprobs_agree_with_the_plugin_excluded(kind, plugin, native, excluded):
    reference = excluded["runs"][kind]
    spread = [lp for lp in reference["prompt_logprobs"] if lp is not None]
    assert max(spread) - min(spread) > 0.5, "logprobs too flat to tell backends apart"
    assert_logprobs_close(plugin["runs"][kind], reference)
    assert_logprobs_close(native["runs"][kind], reference)


@pytest.fixture
def server(checkpoint_ocr2, tmp_path) -> Iterator[Server]:
    with openai_server(checkpoint_ocr2, tmp_path, "ocr2 server") as srv:
        yield srv


def test_openai_server_answers_an_image_request(server):
    status, body = ocr_request(server.url, make_image("invoice 2026-12-03"), max_tokens=4)
    assert status == 200, f"{body}\n{server.log_tail()}"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    samples = wait_for_calls(server.url, OPS)
    print(backend_table(samples))
    calls = {labels["op"] for name, labels, v in samples if name == "normswitch_calls_total" and v > 0}
    assert set(OPS) <= calls, calls
