"""2a: an image prompt; every vision norm and every decoder norm is served by normswitch."""
from __future__ import annotations

import pytest

from normswitch.demo import vision_dtype

from .conftest import RMS_BACKEND, delta, engine_env, run_engine

pytestmark = pytest.mark.slow
MAX_TOKENS = 4


def _of(modules: dict[str, str], *prefixes: str) -> dict[str, str]:
    return {k: v for k, v in modules.items() if k.startswith(prefixes)}


# The machine's fast dtype for the full-size towers, and bf16 (the LayerNormFP32 case: bf16 in,
# float32 math) where that is not already it.
DTYPES = sorted({vision_dtype(), "bfloat16"})


@pytest.mark.parametrize("dtype", DTYPES)
def test_image_prompt_every_norm_served_by_normswitch(dtype, checkpoint, tmp_path):
    result = run_engine(checkpoint, "image", tmp_path, engine_env(), dtype=dtype,
                        max_tokens=MAX_TOKENS, name=f"vision-{dtype}")
    assert len(result["token_ids"]) == MAX_TOKENS

    vision = _of(result["modules"], "sam_model.", "vision_model.")
    layer_norms = [k for k, v in vision.items() if v == "normswitch.modules.LayerNormFP32"]
    norms_2d = [k for k, v in vision.items() if v == "normswitch.modules.LayerNorm2d"]
    others = {k: v for k, v in vision.items() if k not in layer_norms and k not in norms_2d}
    assert not others, f"vision norms not replaced by normswitch modules: {others}"
    # The model's own inventory: SAM blocks (norm1, norm2), the neck's LayerNorm2d, CLIP layers
    # (layer_norm1, layer_norm2) and pre_layrnorm.
    assert "vision_model.pre_layrnorm" in layer_norms
    assert {"sam_model.blocks.0.norm1", "sam_model.blocks.0.norm2"} <= set(layer_norms)
    assert any(".layer_norm1" in k for k in layer_norms) and any(".layer_norm2" in k for k in layer_norms)
    assert sorted(norms_2d) == ["sam_model.neck.1", "sam_model.neck.3"]

    # One vision pass (the 320x240 image needs no crops): each module ran once, through normswitch.
    assert delta(result, "normswitch_calls_total", op="layer_norm", device="cpu",
                 backend=RMS_BACKEND) == len(layer_norms)
    assert delta(result, "normswitch_calls_total", op="layer_norm_channels_first", device="cpu",
                 backend=RMS_BACKEND) == len(norms_2d)

    decoder = _of(result["modules"], "language_model.")
    assert decoder and set(decoder.values()) == {"normswitch.plugin.vllm.layers.NormswitchRMSNorm"}
    served = sum(delta(result, "normswitch_calls_total", op=op, device="cpu", backend=RMS_BACKEND)
                 for op in ("rms_norm", "fused_add_rms_norm"))
    assert served == len(decoder) * MAX_TOKENS  # every decoder norm, every forward step
