"""``normswitch verify``: every available backend of every op against the float64 reference."""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from . import ops, reference
from .backend import OPS
from .platform import present_device_types
from .registry import REGISTRY, BackendUnavailableError

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
Case = tuple[str, Callable[[str], list[tuple[torch.Tensor, torch.Tensor, torch.dtype]]]]


def _rand(*shape: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float32, device=device).to(dtype)


def _cases(op: str, dtype: torch.dtype, device: str) -> Iterator[Case]:
    """(description, run(backend) -> [(out, ref, out dtype)]) for op at a few awkward shapes."""
    for m, n in ((1, 1), (7, 1000), (33, 4096)):
        x = _rand(m, n, dtype=dtype, device=device) * 3 + 0.5
        w = _rand(n, dtype=dtype, device=device)
        b = _rand(n, dtype=dtype, device=device)
        shape = f"({m}, {n})"
        if op == "rms_norm":
            yield shape, lambda be, x=x, w=w: [(ops.rms_norm(x, w, 1e-6, backend=be), reference.rms_norm(x, w, 1e-6), dtype)]
            yield shape + " offset 1", lambda be, x=x, w=w: [
                (ops.rms_norm(x, w, 1e-6, weight_offset=1.0, backend=be), reference.rms_norm(x, w, 1e-6, 1.0), dtype)]
        elif op == "fused_add_rms_norm":
            r = _rand(m, n, dtype=dtype, device=device)

            def run(be, x=x, r=r, w=w):
                y, s = ops.fused_add_rms_norm(x, r, w, 1e-6, backend=be)
                ry, rs = reference.fused_add_rms_norm(x, r, w, 1e-6)
                return [(y, ry, dtype), (s, rs, dtype)]
            yield shape, run
        elif op == "layer_norm":
            yield shape, lambda be, x=x, w=w, b=b: [(ops.layer_norm(x, w, b, 1e-5, backend=be),
                                                     reference.layer_norm(x, w, b, 1e-5), dtype)]
        elif op == "layer_norm_channels_first":
            x4 = _rand(2, n if n < 1000 else 64, 5, 3, dtype=dtype, device=device)
            c = x4.shape[1]
            w4, b4 = w[:c].contiguous(), b[:c].contiguous()
            yield f"(2, {c}, 5, 3)", lambda be, x=x4, w=w4, b=b4: [
                (ops.layer_norm_channels_first(x, w, b, 1e-6, backend=be), reference.layer_norm(x, w, b, 1e-6, dim=1), dtype)]
        elif op == "norm_gated" and n % 4 == 0:
            z = _rand(m, n, dtype=dtype, device=device)
            for rms in (False, True):
                for before in (True, False):
                    def run(be, x=x, w=w, b=b, z=z, rms=rms, before=before):
                        y, mean, rstd = ops.norm_gated(x, w, b, z, 1e-6, n // 4, before, rms, backend=be)
                        ry, rmean, rrstd = reference.norm_gated(x, w, b, z, 1e-6, n // 4, before, rms)
                        pairs = [(y, ry, dtype), (rstd, rrstd, torch.float32)]
                        return pairs + ([] if rms else [(mean, rmean, torch.float32)])
                    yield f"{shape} {'rms' if rms else 'ln'} {'after' if before else 'before'}", run


def verify() -> list[dict]:
    """Rows of (op, device, backend, dtype, case, error, status) for every available backend."""
    rows = []
    for device in present_device_types():
        for op in OPS:
            for name in REGISTRY.names():
                reason = REGISTRY.availability(name, device)
                if reason is not None or op not in REGISTRY.backend(name).impls:
                    continue
                for dtype in DTYPES:
                    torch.manual_seed(0)
                    for case, run in _cases(op, dtype, device):
                        row = {"op": op, "device": device, "backend": name, "dtype": str(dtype).split(".")[-1],
                               "case": case, "error": None, "status": "ok"}
                        try:
                            pairs = run(name)
                        except BackendUnavailableError as exc:
                            row["status"] = "declined"
                            row["detail"] = str(exc)
                        else:
                            errors = [reference.max_error(o, r) / reference.TOLERANCE[t] for o, r, t in pairs]
                            row["error"] = max(errors)
                            row["status"] = "ok" if row["error"] <= 1.0 else "MISMATCH"
                        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    rows = verify()
    print(f"{'op':26} {'device':6} {'backend':8} {'dtype':9} {'case':28} {'err/tol':>8}  status")
    for r in rows:
        err = "-" if r["error"] is None else f"{r['error']:.3f}"
        print(f"{r['op']:26} {r['device']:6} {r['backend']:8} {r['dtype']:9} {r['case']:28} {err:>8}  {r['status']}")
    bad = [r for r in rows if r["status"] == "MISMATCH"]
    print(f"\n{len(rows)} checks, {len(bad)} mismatches, "
          f"{sum(r['status'] == 'declined' for r in rows)} declined by their backend")
    return 1 if bad else 0
