"""2b: a text-only prompt; the decoder's input/post-attention/final norms are served by normswitch."""
from __future__ import annotations

import pytest

from .conftest import RMS_BACKEND, delta, engine_env, run_engine

pytestmark = pytest.mark.slow
MAX_TOKENS = 4
NORMSWITCH_RMSNORM = "normswitch.plugin.vllm.layers.NormswitchRMSNorm"


def test_text_prompt_decoder_norms_served_by_normswitch(checkpoint, tmp_path):
    result = run_engine(checkpoint, "text", tmp_path, engine_env(), max_tokens=MAX_TOKENS, name="decoder")
    decoder = {k: v for k, v in result["modules"].items() if k.startswith("language_model.")}
    layers = sorted({k.split(".layers.")[1].split(".")[0] for k in decoder if ".layers." in k})
    expected = {f"language_model.model.layers.{i}.{n}" for i in layers
                for n in ("input_layernorm", "post_attention_layernorm")}
    expected.add("language_model.model.norm")
    assert layers and expected == set(decoder), decoder
    assert all(v == NORMSWITCH_RMSNORM for v in decoder.values()), decoder

    # Per forward step: layer 0's input norm has no residual (rms_norm); every other norm adds
    # the residual (fused_add_rms_norm). No vision pass for a text prompt.
    calls = {op: delta(result, "normswitch_calls_total", op=op, device="cpu", backend=RMS_BACKEND)
             for op in ("rms_norm", "fused_add_rms_norm", "layer_norm", "layer_norm_channels_first")}
    assert calls == {"rms_norm": MAX_TOKENS, "fused_add_rms_norm": (len(decoder) - 1) * MAX_TOKENS,
                     "layer_norm": 0, "layer_norm_channels_first": 0}


@pytest.mark.parametrize("ir_providers", ["", "native"])
def test_custom_op_disabled_ir_path(ir_providers, checkpoint, tmp_path):
    """With the CustomOp off, vLLM runs ``forward_native`` -> IR op -> the ``normswitch`` provider
    (first by default); a user priority naming ``native`` first takes the IR ops back."""
    result = run_engine(checkpoint, "text", tmp_path, engine_env(), max_tokens=MAX_TOKENS,
                        name=f"ir-path-{ir_providers or 'default'}", custom_ops="all,-RMSNorm",
                        ir_providers=ir_providers)
    decoder = [k for k in result["modules"] if k.startswith("language_model.")]
    calls = {op: delta(result, "normswitch_calls_total", op=op, device="cpu", backend=RMS_BACKEND)
             for op in ("rms_norm", "fused_add_rms_norm")}
    if ir_providers == "native":
        assert calls == {"rms_norm": 0, "fused_add_rms_norm": 0}
    else:
        assert calls == {"rms_norm": MAX_TOKENS, "fused_add_rms_norm": (len(decoder) - 1) * MAX_TOKENS}
