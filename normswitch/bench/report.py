"""Tables, target checks, JSON and the GB/s-vs-N plot of a benchmark run."""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Optional

TARGET_N = (1280, 4096, 7168, 8192)
OURS = "triton"


def _points(rows: list[dict]) -> dict[tuple, dict[str, dict]]:
    """(label, dtype, M, N) -> impl -> row, in run order."""
    out: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        out.setdefault((r["label"], r["dtype"], r["M"], r["N"]), {})[r["impl"]] = r
    return out


def _cell(r: Optional[dict]) -> str:
    if r is None or "us" not in r:
        return "-" if r is None or "skipped" in r else "error"
    return f"{r['us']:.1f} ({r['pct_copy']:.0f}%)"


def table(rows: list[dict], impls: list[str], markdown: bool = False) -> str:
    """One line per point: us (and % of copy bandwidth) per implementation, and ours vs the best."""
    head = ["op", "dtype", "M", "N", *impls, f"{OURS}/best alt", f"{OURS} eager host us"]
    lines = []
    for (label, dtype, m, n), by in _points(rows).items():
        alts = [r["us"] for k, r in by.items() if k != OURS and "us" in r]
        ratio = ""
        if OURS in by and "us" in by[OURS] and alts:
            ratio = f"{by[OURS]['us'] / min(alts):.2f}"
        eager = f"{by[OURS]['host_us']:.1f}" if "host_us" in by.get(OURS, {}) else ""
        lines.append([label, dtype, str(m), str(n), *[_cell(by.get(k)) for k in impls], ratio, eager])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join(fmt.format(*line) for line in [head, *lines])


def targets(rows: list[dict], ceilings: Any) -> dict[str, Any]:
    """The issue's targets for the ``triton`` column (bf16), each with its misses."""
    pts = _points(rows)
    misses: dict[str, list[str]] = defaultdict(list)
    for (label, dtype, m, n), by in pts.items():
        ours = by.get(OURS, {})
        if "us" not in ours:
            if OURS in by:
                misses["ran"].append(f"{label} {dtype} {m}x{n}: {ours.get('error') or ours.get('skipped')}")
            continue
        where = f"{label} {dtype} {m}x{n}"
        if dtype == "bfloat16" and m >= 4096 and n in TARGET_N and ours["pct_copy"] < 95:
            misses["bandwidth >= 95% of copy"].append(f"{where}: {ours['pct_copy']:.1f}%")
        for k, r in by.items():
            if k != OURS and "us" in r and r["us"] < ours["us"]:
                misses["fastest at every shape"].append(f"{where}: {k} {r['us']:.2f} us < {ours['us']:.2f} us")
        fla = by.get("fla", {})
        if label.startswith("norm_gated") and m >= 4096 and "us" in fla and fla["us"] < 1.5 * ours["us"]:
            misses["gated >= 1.5x FLA"].append(f"{where}: {fla['us'] / ours['us']:.2f}x")
        if dtype == "bfloat16" and m <= 64 and ours["us"] > 1.2 * ours["decode_bound_us"]:
            misses["decode <= 1.2x (launch + bytes)"].append(
                f"{where}: {ours['us']:.2f} us vs bound {ours['decode_bound_us']:.2f} us")
    return {"copy_gbps": ceilings.copy_gbps, "empty_us": ceilings.empty_us,
            "empty_eager_us": ceilings.empty_eager_us, "misses": dict(misses), "wins": wins(rows)}


def wins(rows: list[dict]) -> dict[str, dict[str, Any]]:
    """Per op: the points where ours is at least as fast as every peer that ran, out of those
    where ours and a peer ran, and the worst ratio best-peer time / ours (< 1: behind)."""
    out: dict[str, dict[str, Any]] = {}
    for (label, dtype, m, n), by in _points(rows).items():
        ours = by.get(OURS, {})
        peers = [(r["us"], k) for k, r in by.items() if k != OURS and "us" in r]
        if "us" not in ours or not peers:
            continue
        best_us, best = min(peers)
        ratio = best_us / ours["us"]
        op = out.setdefault(label, {"points": 0, "won": 0, "worst": None})
        op["points"] += 1
        op["won"] += ratio >= 1.0
        if op["worst"] is None or ratio < op["worst"]["ratio"]:
            op["worst"] = {"ratio": ratio, "at": f"{dtype} {m}x{n}", "peer": best}
    return out


def summary_text(summary: dict[str, Any], limit: int = 12) -> str:
    """The target check as text: the ceilings, then each missed target with its first misses."""
    lines = [f"copy bandwidth {summary['copy_gbps']:.0f} GB/s; empty launch {summary['empty_us']:.2f} us "
             f"(graph replay; eager {summary['empty_eager_us']:.2f} us)"]
    for op, w in summary.get("wins", {}).items():
        worst = w["worst"]
        lines.append(f"{op}: fastest at {w['won']} of {w['points']} points; worst {worst['ratio']:.2f}x "
                     f"the best peer ({worst['peer']}, {worst['at']})")
    if not summary["misses"]:
        lines.append("all targets met")
    for name, items in summary["misses"].items():
        lines.append(f"MISSED {name}: {len(items)} point(s)")
        lines += [f"  {x}" for x in items[:limit]]
    return "\n".join(lines)


def write_json(path: str, meta: dict, ceilings: Any, rows: list[dict], summary: dict) -> None:
    """Everything of the run: environment, ceilings, every row, the target check."""
    data = {"meta": meta, "ceilings": {"copy_gbps": ceilings.copy_gbps, "empty_us": ceilings.empty_us,
                                       "empty_eager_us": ceilings.empty_eager_us},
            "rows": rows, "targets": summary}
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=str)


def plot(path: str, rows: list[dict], impls: list[str], copy_gbps: float,
         ms: tuple[int, ...] = (4096, 32768)) -> None:
    """GB/s against N per op (bf16), one line per implementation (the same colour in every
    panel), one column per M."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in rows if r["dtype"] == "bfloat16"))
    colours = {impl: f"C{k % 10}" for k, impl in enumerate(impls)}  # one colour per impl everywhere
    fig, axes = plt.subplots(len(labels), len(ms), figsize=(6 * len(ms), 3.2 * len(labels)),
                             squeeze=False)
    for i, label in enumerate(labels):
        for j, m in enumerate(ms):
            ax = axes[i][j]
            for impl in impls:
                pts = sorted((r["N"], r["gbps"]) for r in rows if r["label"] == label
                             and r["M"] == m and r["impl"] == impl and r["dtype"] == "bfloat16"
                             and "gbps" in r)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=impl, color=colours[impl])
            ax.axhline(copy_gbps, color="gray", linestyle="--", linewidth=1, label="copy")
            ax.set_xscale("log", base=2)
            ax.set_title(f"{label}, M={m}, bf16")
            ax.set_xlabel("N")
            ax.set_ylabel("GB/s")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
