"""DeepSeek-OCR inside vLLM with its SAM and CLIP norms served by normswitch.

``NormswitchDeepseekOCRForCausalLM`` is registered under vLLM's architecture name
``DeepseekOCRForCausalLM``; after vLLM's constructor it swaps the towers' norms
(``normswitch.plugin.vllm.vision_norms``). The decoder's ``RMSNorm`` layers are CustomOps and are
served through ``normswitch.plugin.vllm.layers``.
"""
from __future__ import annotations

from vllm.model_executor.models.deepseek_ocr import DeepseekOCRForCausalLM

from .vision_norms import serve_vision_norms

VISION_TOWERS = ("sam_model", "vision_model")


class NormswitchDeepseekOCRForCausalLM(DeepseekOCRForCausalLM):
    """vLLM's DeepSeek-OCR with its SAM and CLIP norms replaced by normswitch modules."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        serve_vision_norms(self, VISION_TOWERS)
