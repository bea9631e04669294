"""DeepSeek-OCR 2 inside vLLM with its SAM and Qwen2-encoder norms served by normswitch.

``NormswitchDeepseekOCR2ForCausalLM`` is registered under vLLM's architecture name
``DeepseekOCR2ForCausalLM``; after vLLM's constructor it swaps the norms of SAM (float32
LayerNorm, LayerNorm2d) and of the Qwen2 encoder (vLLM's ``RMSNorm`` path), see
``normswitch.plugin.vllm.vision_norms``. The decoder's ``RMSNorm`` layers are CustomOps and are
served through ``normswitch.plugin.vllm.layers``.
"""
from __future__ import annotations

from vllm.model_executor.models.deepseek_ocr2 import DeepseekOCR2ForCausalLM

from .vision_norms import serve_vision_norms

VISION_TOWERS = ("sam_model", "qwen2_model")


class NormswitchDeepseekOCR2ForCausalLM(DeepseekOCR2ForCausalLM):
    """vLLM's DeepSeek-OCR 2 with its SAM and Qwen2-encoder norms served by normswitch."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        serve_vision_norms(self, VISION_TOWERS)
