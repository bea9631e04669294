"""2c: the backend switch inside the engine (text-only, decoder path).

Each configuration runs in its own engine process. The metrics show the backend that ran; the
prompt tokens' logprobs and the first sampled position's top logprobs agree with vLLM's own run
(the plugin excluded through ``VLLM_PLUGINS``) within bf16 tolerance.
"""
from __future__ import annotations

import pytest

from .conftest import RMS_BACKEND, assert_logprobs_close, calls_by_backend, engine_env, run_engine

pytestmark = pytest.mark.slow
MAX_TOKENS = 4
DECODER_OPS = ("rms_norm", "fused_add_rms_norm")

YAML_CONFIG = """\
on_unavailable: fallback
devices:
  cpu:
    backends: [native]
    ops:
      rms_norm: {backends: [triton, native]}
"""

# name -> (environment overrides, expected {op: backend})
CONFIGS = {
    "default": ({}, {"rms_norm": RMS_BACKEND, "fused_add_rms_norm": RMS_BACKEND}),
    "use_native_layernorm": ({"USE_NATIVE_LAYERNORM": "1"},
                             {"rms_norm": "native", "fused_add_rms_norm": "native"}),
    "triton_interpret": ({"NORMSWITCH_BACKEND": "triton", "TRITON_INTERPRET": "1"},
                         {"rms_norm": "triton", "fused_add_rms_norm": "triton"}),
    "yaml_config": ({"NORMSWITCH_CONFIG": "{yaml}", "TRITON_INTERPRET": "1"},
                    {"rms_norm": "triton", "fused_add_rms_norm": "native"}),
}


@pytest.fixture(scope="module")
def reference(checkpoint, tmp_path_factory) -> dict:
    """vLLM's own norms: the plugin excluded (``VLLM_PLUGINS`` names no plugin)."""
    result = run_engine(checkpoint, "text", tmp_path_factory.mktemp("excluded"),
                        engine_env(VLLM_PLUGINS=""), max_tokens=MAX_TOKENS, name="excluded")
    assert not result["metrics_after"], "normswitch metrics although the plugin was excluded"
    decoder = {v for k, v in result["modules"].items() if k.startswith("language_model.")}
    assert decoder == {"vllm.model_executor.layers.layernorm.RMSNorm"}
    spread = [lp for lp in result["prompt_logprobs"] if lp is not None]
    assert max(spread) - min(spread) > 0.5, "logprobs too flat to tell backends apart"
    return result


@pytest.mark.parametrize("name", list(CONFIGS))
def test_backend_switch_in_engine(name, checkpoint, tmp_path, reference):
    overrides, expected = CONFIGS[name]
    if "NORMSWITCH_CONFIG" in overrides:
        config = tmp_path / "normswitch.yaml"
        config.write_text(YAML_CONFIG)
        overrides = {**overrides, "NORMSWITCH_CONFIG": str(config)}
    result = run_engine(checkpoint, "text", tmp_path, engine_env(**overrides),
                        max_tokens=MAX_TOKENS, name=name)
    for op, backend in expected.items():
        served = calls_by_backend(result, op)
        assert set(served) == {backend} and served[backend] > 0, (op, served)
        assert result["metrics_after"].get(
            f"normswitch_backend_selected{{backend={backend},bucket=all,device=cpu,op={op}}}") == 1.0
    assert_logprobs_close(result, reference)
