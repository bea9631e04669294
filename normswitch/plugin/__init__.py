"""Integrations of normswitch into serving engines: vLLM (``vllm``) and SGLang (``sglang``).

Both plugins start the same way in every engine process (:func:`start`): normswitch's log
records go to the engine's own handlers (its format, time and process tag), and the whole
configuration (file and every variable) is loaded and checked, so a bad setting stops the engine
at start-up with one line instead of failing its first request.
"""
from __future__ import annotations

import logging

from ..config import ConfigError
from ..registry import REGISTRY

NORMSWITCH_LOGGER = "normswitch"


def route_logs(engine_logger: logging.Logger) -> None:
    """Send the ``normswitch`` logger's records to ``engine_logger``'s handlers, at its level.

    The engine's handlers are the ones on ``engine_logger`` or, when it has none, on the first
    ancestor that has some (as propagation would find them).
    """
    source = engine_logger
    while source is not None and not source.handlers:
        source = source.parent if source.propagate else None
    if source is None:
        return
    ours = logging.getLogger(NORMSWITCH_LOGGER)
    ours.handlers = list(source.handlers)
    ours.setLevel(engine_logger.getEffectiveLevel())
    ours.propagate = False


def start(engine: str, engine_logger: logging.Logger) -> None:
    """Route the logs, then load and check every setting; on an invalid one, log one line
    naming its source, key, value and the allowed values, and exit the process with status 2."""
    route_logs(engine_logger)
    try:
        config = REGISTRY.config
    except ConfigError as exc:
        engine_logger.error("normswitch: invalid setting, %s stops: %s", engine, exc)
        raise SystemExit(2) from None
    engine_logger.info("normswitch: settings from %s", config.summary())
