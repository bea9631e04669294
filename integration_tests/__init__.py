"""DeepSeek-OCR's vision and decoder paths inside vLLM, served by normswitch (slow; CPU or GPU)."""
