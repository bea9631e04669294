"""The normswitch vLLM plugin (entry point ``vllm.general_plugins``: ``normswitch``).

vLLM calls :func:`register` in every process it starts (front end, engine core, workers). It:

- routes vLLM's ``RMSNorm`` (with and without residual), ``GemmaRMSNorm``, ``RMSNormGated`` and
  ``LayerNorm`` CustomOps through normswitch (``layers``);
- registers normswitch as the first provider of the IR ops ``rms_norm`` and
  ``fused_add_rms_norm`` where ``vllm.ir`` exists (``ir``);
- registers a ``DeepseekOCRForCausalLM`` whose SAM and CLIP norms are normswitch modules
  (``deepseek_ocr``) and a ``DeepseekOCR2ForCausalLM`` whose SAM norms are normswitch modules and
  whose Qwen2 encoder norms take vLLM's ``RMSNorm`` path (``deepseek_ocr2``; both through
  ``vision_norms``);
- brings the engine processes' ``normswitch_*`` metrics onto the server's ``/metrics``
  (``metrics``).

Each hook is independent: one that this vLLM version cannot take is logged once, with the
reason, and skipped, and vLLM starts. An invalid normswitch setting (config file or variable)
stops the process at once with one log line (``normswitch.plugin.start``). Exclude the plugin
with ``VLLM_PLUGINS`` (a list of the plugins to load that does not name ``normswitch``).
"""
from __future__ import annotations

import logging
from typing import Callable

# A child of vLLM's "vllm" logger, so messages use vLLM's handlers and format.
logger = logging.getLogger("vllm.plugins.normswitch")
_results: dict[str, str] = {}


def _layers() -> str:
    from .layers import REPLACEMENTS, register_layers

    skipped = register_layers()
    for name, reason in skipped.items():
        logger.warning("normswitch: vLLM %s not routed through normswitch: %s", name, reason)
    served = [name for name in REPLACEMENTS if name not in skipped]
    return "served: " + ", ".join(served)


def _ir() -> str:
    try:
        import vllm.ir  # noqa: F401
    except ImportError as exc:
        return f"skipped: this vLLM has no vllm.ir ({exc})"
    from .ir import IR_OPS, register_ir_providers

    register_ir_providers()
    return "provider 'normswitch' first for " + ", ".join(IR_OPS)


def _model(architecture: str, target: str) -> Callable[[], str]:
    """A hook registering ``target`` (``module:Class``, imported lazily by vLLM) for ``architecture``."""

    def hook() -> str:
        from vllm import ModelRegistry

        if architecture not in ModelRegistry.get_supported_archs():
            return f"skipped: this vLLM has no {architecture}"
        ModelRegistry.register_model(architecture, target)
        return f"{architecture} -> {target}"

    return hook


def _metrics() -> str:
    from .metrics import install_metrics_bridge

    return install_metrics_bridge()


HOOKS: dict[str, Callable[[], str]] = {
    "layers": _layers,
    "ir": _ir,
    "deepseek_ocr": _model("DeepseekOCRForCausalLM",
                           "normswitch.plugin.vllm.deepseek_ocr:NormswitchDeepseekOCRForCausalLM"),
    "deepseek_ocr2": _model("DeepseekOCR2ForCausalLM",
                            "normswitch.plugin.vllm.deepseek_ocr2:NormswitchDeepseekOCR2ForCausalLM"),
    "metrics": _metrics,
}


def register() -> dict[str, str]:
    """Check the settings, then install every hook that this vLLM supports; returns
    ``{hook: outcome}``. Exits the process (status 2) on an invalid setting, else never raises."""
    from .. import start

    start("vLLM", logger)
    for name, hook in HOOKS.items():
        if name in _results:
            continue
        try:
            _results[name] = hook()
        except Exception as exc:  # the plugin must never stop vLLM from starting
            _results[name] = f"failed: {type(exc).__name__}: {exc}"
            logger.warning("normswitch: vLLM hook %r not installed (vLLM runs unmodified there): %s",
                           name, _results[name])
    logger.info("normswitch vLLM plugin: %s", _results)
    return dict(_results)
