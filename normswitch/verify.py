"""``normswitch verify``: every available backend of every op, on every generated case of the op,
against the op's float64 reference and tolerance."""
from __future__ import annotations

import torch

from .ops import DECLARATIONS
from .platform import present_device_types
from .registry import REGISTRY, BackendUnavailableError

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def verify() -> list[dict]:
    """Rows of (op, device, backend, dtype, case, error/tolerance, status) for every available backend."""
    rows = []
    for device in present_device_types():
        for op, decl in DECLARATIONS.items():
            for name in REGISTRY.names():
                if REGISTRY.availability(op, name, device) is not None:
                    continue
                for dtype in DTYPES:
                    torch.manual_seed(0)
                    for case in decl.generate(device, dtype):
                        row = {"op": op, "device": device, "backend": name,
                               "dtype": str(dtype).split(".")[-1], "case": case.label,
                               "error": None, "status": "ok"}
                        try:
                            errors = case.errors(case.run(name))
                        except BackendUnavailableError as exc:
                            row.update(status="declined", detail=str(exc))
                        else:
                            row["error"] = max((e / t if t else float("inf") for _, e, t in errors), default=0.0)
                            row["status"] = "ok" if row["error"] <= 1.0 else "MISMATCH"
                        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    rows = verify()
    print(f"{'op':26} {'device':6} {'backend':10} {'dtype':9} {'case':40} {'err/tol':>8}  status")
    for r in rows:
        err = "-" if r["error"] is None else f"{r['error']:.3f}"
        print(f"{r['op']:26} {r['device']:6} {r['backend']:10} {r['dtype']:9} {r['case']:40} {err:>8}  {r['status']}")
    bad = [r for r in rows if r["status"] == "MISMATCH"]
    print(f"\n{len(rows)} checks, {len(bad)} mismatches, "
          f"{sum(r['status'] == 'declined' for r in rows)} declined by their backend")
    return 1 if bad else 0
