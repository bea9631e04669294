"""The tiny checkpoints' configs (``normswitch demo --model ocr|ocr2``)."""
from __future__ import annotations

import pytest

from normswitch.demo import checkpoint


def test_ocr_and_ocr2_share_the_language_model():
    ocr, ocr2 = checkpoint.model_config("ocr"), checkpoint.model_config("ocr2")
    assert ocr["architectures"] == ["DeepseekOCRForCausalLM"]
    assert ocr2["architectures"] == ["DeepseekOCR2ForCausalLM"]
    assert ocr["language_config"] == ocr2["language_config"]
    # SGLang's is_ocr2_config reads either of these; the Qwen2 encoder's width is 896.
    assert ocr2["vision_config"]["model_name"] == "deepencoderv2"
    assert ocr2["projector_config"]["input_dim"] == 896
    assert ocr2["projector_config"]["n_embed"] == ocr2["language_config"]["hidden_size"]


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="ocr, ocr2"):
        checkpoint.model_config("ocr3")
