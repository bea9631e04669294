"""2c: the backend switch inside the engine (text-only, decoder path).

Each configuration runs in its own engine process. The metrics show the backend that ran; the
prompt tokens' logprobs and the first sampled position's top logprobs agree with vLLM's own run
(the plugin excluded through ``VLLM_PLUGINS``) within bf16 tolerance.
"""
from __future__ import annotations

import math

import pytest

from .conftest import RMS_BACKEND, calls_by_backend, engine_env, run_engine

pytestmark = pytest.mark.slow
MAX_TOKENS = 4
DECODER_OPS = ("rms_norm", "fused_add_rms_norm")
# bf16 keeps 8 significant bits: one rounding step of a logit of magnitude ~4 is 2^-6 = 0.016.
# Norm backends differ by float32 reduction order and where they round to bf16; measured on the
# CPU: 0.008 (native) to 0.021 (Triton interpreter) against vLLM's own norms. The tolerance is a
# few bf16 steps.
LOGPROB_ATOL = 0.08

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


def _assert_logprobs_close(result: dict, reference: dict) -> None:
    got, want = result["prompt_logprobs"], reference["prompt_logprobs"]
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert (a is None) == (b is None)
        if a is not None:
            assert math.isclose(a, b, abs_tol=LOGPROB_ATOL), f"prompt position {i}: {a} vs {b}"
    first, ref_first = result["first_logprobs"], reference["first_logprobs"]
    common = set(first) & set(ref_first)
    assert len(common) >= 3, f"top tokens differ: {first} vs {ref_first}"
    for tok in common:
        assert math.isclose(first[tok], ref_first[tok], abs_tol=LOGPROB_ATOL), (tok, first, ref_first)


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
    _assert_logprobs_close(result, reference)
