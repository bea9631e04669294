"""Host time per eager call with and without a tuning file, side by side in one process.

The tuned choice is resolved into the cached plan, so a call served by the same backend should
cost the same with the file as without it. For each call kind (M = 1, bf16) the public op is timed
in a loop of back-to-back calls with ``NORMSWITCH_TUNED`` set and unset in turn (``normswitch.reset()``
and a warm-up after each switch), over interleaved rounds; reported: the backend each setting
served and the median us per call of each. Where both settings serve the same backend the ratio
is the tuning file's own cost.

Usage: ``python -m benchmarks.tuned_host_ab FILE [--device cpu|cuda] [--json OUT]`` (FILE: a tuning
file made on this machine, for example by ``normswitch tune``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any, Callable

import torch

import normswitch as ns
from normswitch.registry import REGISTRY

ROUNDS, CALLS = 9, 300


def calls(device: str, n: int) -> dict[str, Callable[[], Any]]:
    """One public call per op at M = 1, hidden ``n``, bf16."""
    dt = torch.bfloat16
    x = torch.randn(1, n, device=device, dtype=dt)
    r, z = torch.randn_like(x), torch.randn_like(x)
    w, b = torch.randn(n, device=device, dtype=dt), torch.randn(n, device=device, dtype=dt)
    return {
        "rms_norm": lambda: ns.rms_norm(x, w, 1e-6),
        "fused_add_rms_norm": lambda: ns.fused_add_rms_norm(x, r, w, 1e-6),
        "layer_norm": lambda: ns.layer_norm(x, w, b, 1e-6),
        "norm_gated": lambda: ns.norm_gated(x, w, None, z, 1e-6, None, False, True),
    }


def use(tuned: str | None) -> None:
    if tuned is None:
        os.environ.pop("NORMSWITCH_TUNED", None)
    else:
        os.environ["NORMSWITCH_TUNED"] = tuned
    ns.reset()


def loop_us(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    for _ in range(CALLS):
        fn()
    sync()
    return 1e6 * (time.perf_counter() - t0) / CALLS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tuned", help="a tuning file made on this machine")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--N", type=int, default=4096)
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()
    sync = torch.cuda.synchronize if a.device != "cpu" else (lambda: None)
    fns = calls(a.device, a.N)
    settings = {"with file": os.path.abspath(a.tuned), "without": None}
    times: dict[tuple[str, str], list[float]] = {}
    served: dict[tuple[str, str], str] = {}
    with torch.inference_mode():
        for rnd in range(ROUNDS):
            order = list(settings.items())
            for name, tuned in order if rnd % 2 == 0 else order[::-1]:
                use(tuned)
                for op, fn in fns.items():
                    for _ in range(20):
                        fn()
                    times.setdefault((op, name), []).append(loop_us(fn, sync))
                    served[op, name] = "/".join(sorted(REGISTRY.serving(op)))
    use(None)
    result: dict[str, Any] = {"device": a.device, "torch": torch.__version__, "N": a.N, "ops": {}}
    print(f"host us per call at M = 1, N = {a.N}, bf16 on {a.device}: median of {ROUNDS} interleaved loops of {CALLS}")
    for op in fns:
        row = {name: {"us": round(statistics.median(times[op, name]), 2), "served": served[op, name]}
               for name in settings}
        row["ratio"] = round(row["with file"]["us"] / row["without"]["us"], 3)
        result["ops"][op] = row
        print(f"  {op:20s} with file {row['with file']['us']:7.2f} ({row['with file']['served']})  "
              f"without {row['without']['us']:7.2f} ({row['without']['served']})  ratio {row['ratio']:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
