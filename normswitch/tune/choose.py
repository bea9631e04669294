"""The tuning file's choice for one kind of call, as the registry uses it.

A bucket's choice stands only where the file measured every backend that could serve the call
now: a backend that is available and accepts the call but has neither a time nor a failure in
that bucket (normswitch gained a kernel since the file was made, or a backend package was
installed later, within the backends the tuner considered) makes the bucket stale. A stale
bucket is left to the configured order, with one warning per kind of call that says which
backends the file did not measure, so an old file never pins a slower backend silently.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

from . import buckets

if TYPE_CHECKING:
    from ..registry import Call, Registry

log = logging.getLogger("normswitch")
_warned: set[tuple] = set()


def tuned_choice(registry: "Registry", call: "Call", bucket: int) -> tuple[Optional[str], str]:
    """The file's backend for ``call`` in ``bucket`` (None: no file, no entry, an explicit
    setting, the backend declines, or the entry is stale) and the line saying where it came from."""
    table = registry.tuned_table(call.device_type)
    if table is None or registry.config.explicit(call.op) is not None:
        return None, ""
    kind = (call.op, call.dtype, call.hidden_size, call.group_size, tuple(sorted(call.features)))
    choice = table.get(kind + (bucket,))
    if choice is None or registry.decline(choice.backend, call) is not None:
        return None, ""
    tuning = registry.config.tuning
    considered = tuning.considered(call.device_type)
    unmeasured = [name for name in registry.config.backends(call.op, call.device_type).value
                  if (considered is None or name in considered) and name not in choice.times
                  and name not in choice.failed and registry.decline(name, call) is None]
    if unmeasured:
        if (tuning.path, kind) not in _warned:
            _warned.add((tuning.path, kind))
            log.warning("normswitch: tuning file %s (%s) has no times of %s for %s %s N=%d: the configured "
                        "order serves it; run normswitch tune again", tuning.path, tuning.source,
                        ", ".join(unmeasured), call.op, str(call.dtype).replace("torch.", ""), call.hidden_size)
        return None, ""
    times = ", ".join(f"{k} {v:.1f} us" for k, v in sorted(choice.times.items(), key=lambda kv: kv[1]))
    return choice.backend, f"{tuning.source}: rows {buckets.label(bucket)} ({times})"
