"""Integrations of normswitch into serving engines: vLLM (``vllm``) and SGLang (``sglang``)."""
