"""Whether the selection runs the fastest of normswitch's own backends at each benchmark point.

Reads the JSON of ``normswitch bench --impls <backends>,normswitch --json F``: per point, the
``normswitch`` column (the registry's selection, no ``backend=``; the row names the backend that
served it) against the fastest of the backend columns. A point passes when the served backend
is the fastest one, and holds the limit when the selection's time is within 3% of the fastest.

Usage: ``python -m normswitch.tune.compare bench.json [--selection other.json] [--markdown F]``;
``--selection`` takes the ``normswitch`` column from another run (say, without a tuning file)
and the backend columns from the first. Either file may be the JSON of ``--json`` or the JSON
lines of ``--stream`` (what a run cut short leaves).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from ..registry import BACKEND_MODULES

AUTO = "normswitch"
LIMIT = 1.03


def points(rows: list[dict], own: tuple[str, ...] = tuple(BACKEND_MODULES)) -> list[dict]:
    """One dict per point with an ``normswitch`` time and at least one backend time."""
    by: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by.setdefault((r["label"], r["dtype"], r["M"], r["N"]), {})[r["impl"]] = r
    out = []
    for (label, dtype, m, n), impls in by.items():
        auto = impls.get(AUTO, {})
        times = {k: r["us"] for k, r in impls.items() if k in own and "us" in r}
        if "us" not in auto or not times:
            continue
        fastest = min(times, key=times.get)
        served = auto.get("served_by")
        out.append({"label": label, "dtype": dtype, "M": m, "N": n, "times": times, "auto_us": auto["us"],
                    "served_by": served, "fastest": fastest, "ran_fastest": served == fastest,
                    "ratio": auto["us"] / times[fastest],
                    "served_ratio": times[served] / times[fastest] if served in times else float("nan")})
    return out


def summary(pts: list[dict]) -> str:
    """The two numbers of the target: share of points run by the fastest, the worst ratio."""
    if not pts:
        return "no points with a normswitch column"
    fastest = sum(p["ran_fastest"] for p in pts)
    worst = max(pts, key=lambda p: p["ratio"])
    over = [p for p in pts if p["ratio"] > LIMIT]
    return (f"{fastest}/{len(pts)} points ({100 * fastest / len(pts):.1f}%) run the fastest backend; "
            f"worst normswitch/fastest {worst['ratio']:.3f} ({worst['label']} {worst['dtype']} "
            f"{worst['M']}x{worst['N']}); {len(over)} points over {LIMIT:.2f}")


def markdown(pts: list[dict], own: list[str]) -> str:
    """The table: each backend's time, the selection's time and backend, the ratios."""
    head = ["op", "dtype", "M", "N", *own, "normswitch (served by)", "fastest", "normswitch/fastest",
            "served/fastest", "ok"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in pts:
        cells = [f"{p['times'][k]:.2f}" if k in p["times"] else "-" for k in own]
        ok = "yes" if p["ran_fastest"] and p["ratio"] <= LIMIT else ("within 3%" if p["ratio"] <= LIMIT else "NO")
        lines.append("| " + " | ".join([p["label"], p["dtype"], str(p["M"]), str(p["N"]), *cells,
                                        f"{p['auto_us']:.2f} ({p['served_by']})", p["fastest"],
                                        f"{p['ratio']:.3f}", f"{p['served_ratio']:.3f}", ok]) + " |")
    return "\n".join(lines)


def load(path: str) -> dict:
    """A bench result: the ``--json`` document, or ``{"rows": [...]}`` of ``--stream`` lines."""
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"rows": [json.loads(line) for line in text.splitlines() if line.strip()]}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_json")
    ap.add_argument("--selection", help="take the normswitch column from this run instead")
    ap.add_argument("--markdown", help="write the table and summary here")
    ap.add_argument("--title", default="normswitch selection against its fastest backend")
    a = ap.parse_args(argv)
    data = load(a.bench_json)
    rows = data["rows"]
    if a.selection:
        rows = [r for r in rows if r["impl"] != AUTO] + [r for r in load(a.selection)["rows"] if r["impl"] == AUTO]
    pts = points(rows)
    own = [k for k in BACKEND_MODULES if any(k in p["times"] for p in pts)]
    text = summary(pts)
    print(text)
    if a.markdown:
        meta = ", ".join(f"{k} {v}" for k, v in data.get("meta", {}).items())
        with open(a.markdown, "w") as f:
            f.write(f"# {a.title}\n\n{meta}\n\nus per call (`us` of normswitch bench: CUDA-graph replay on GPUs, "
                    f"median eager call on CPU).\n\n**{text}**\n\n{markdown(pts, own)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
