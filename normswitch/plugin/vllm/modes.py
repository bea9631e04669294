"""The preset for the mode vLLM runs in: without CUDA graphs (``enforce_eager``) a decode step is
bound by host time per call, so ``configs/cuda-eager.yaml`` (the backends with the cheaper
launch first) is laid beneath the user's config.

It is decided once per process, when vLLM builds the first layer normswitch serves (the engine's
config is current then). The user's ``NORMSWITCH_CONFIG``, tuning file and variables still win
over the preset; a choice the preset makes names it as its source (the plan's ``source``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import normswitch
from normswitch.config import use_preset

logger = logging.getLogger("vllm.plugins.normswitch")
EAGER_PRESET = Path(normswitch.__file__).parent / "configs" / "cuda-eager.yaml"
EAGER_WHY = "vLLM enforce_eager"
_decided: Optional[bool] = None
"""Whether the eager preset was laid in this process (None: not decided yet)."""


def engine_runs_eager() -> tuple[bool, bool]:
    """(vLLM's current config has ``enforce_eager``, the platform is CUDA)."""
    from vllm.config import get_current_vllm_config
    from vllm.platforms import current_platform

    model = get_current_vllm_config().model_config
    return bool(model is not None and model.enforce_eager), bool(current_platform.is_cuda())


def follow(eager: bool, cuda: bool) -> bool:
    """Lay the eager preset when ``eager`` on ``cuda`` (once per process); True if it is laid."""
    global _decided
    if _decided is None:
        _decided = eager and cuda
        if _decided:
            use_preset(EAGER_PRESET, EAGER_WHY)
            normswitch.reset()
            logger.info("normswitch: vLLM runs without CUDA graphs (enforce_eager): %s laid beneath "
                        "the config (decoder RMSNorms on vLLM's _C kernels first: a cheaper launch "
                        "per call)", EAGER_PRESET.name)
    return bool(_decided)


def follow_engine() -> None:
    """:func:`follow` for the running vLLM; a config it cannot read leaves the defaults (logged)."""
    if _decided is not None:
        return
    try:
        eager, cuda = engine_runs_eager()
    except Exception as exc:  # an unreadable engine config must not stop the layer from building
        logger.warning("normswitch: cannot read vLLM's mode (%s: %s); the default backends serve",
                       type(exc).__name__, exc)
        eager = cuda = False
    follow(eager, cuda)


def forget() -> None:
    """Undo :func:`follow` (tests)."""
    global _decided
    if _decided:
        use_preset(None)
        normswitch.reset()
    _decided = None
