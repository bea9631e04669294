"""How results are compared with the float64 references of ``normswitch.ops``: one error measure
and one tolerance table for the tests, ``normswitch verify`` and ``normswitch bench``."""
from __future__ import annotations

import torch

TOLERANCE = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
"""Largest :func:`max_error` accepted per output dtype: about two units in the last place, for
results rounded once or twice (the HF RMSNorm order) after float32 arithmetic."""


def max_error(out: torch.Tensor, ref: torch.Tensor, on: "torch.device | str" = "cpu") -> float:
    """Largest ``|out - ref| / (1 + |ref|)``; ``inf`` when shapes differ or out has a NaN/inf
    where the reference is finite (NaN never passes). Computed in float64 on device ``on``
    (``ref.device`` spares copying large GPU results to the host)."""
    if tuple(out.shape) != tuple(ref.shape):
        return float("inf")
    if out.numel() == 0:
        return 0.0
    o = out.detach().to(device=on, dtype=torch.float64)
    r = ref.detach().to(device=on, dtype=torch.float64)
    finite = torch.isfinite(r)
    if not torch.equal(torch.isfinite(o), finite) or not torch.equal(o[~finite], r[~finite]):
        return float("inf")
    if not finite.any():
        return 0.0
    return ((o[finite] - r[finite]).abs() / (1.0 + r[finite].abs())).max().item()


def close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> bool:
    """Within ``TOLERANCE[dtype]`` of the float64 reference."""
    return max_error(out, ref) <= TOLERANCE[dtype]
