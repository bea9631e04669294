"""Random inputs for the ops' generated cases: never zeros, in every layout a kernel must take."""
from __future__ import annotations

from typing import Optional

import torch

LAYOUTS = ("contiguous", "strided", "expanded")


def rand(shape: tuple[int, ...], dtype: torch.dtype, device: str, *, layout: str = "contiguous",
         scale: float = 2.0, shift: float = 0.3) -> torch.Tensor:
    """Normal random data of ``shape``; ``strided``: rows that are not packed (a slice of wider
    rows); ``expanded``: every leading index shares one row (stride 0)."""
    if layout == "strided":
        wide = torch.randn(*shape[:-1], shape[-1] + 17, device=device) * scale + shift
        return wide.to(dtype)[..., : shape[-1]]
    if layout == "expanded":
        row = torch.randn(shape[-1], device=device) * scale + shift
        return row.to(dtype).expand(shape)
    return (torch.randn(*shape, device=device) * scale + shift).to(dtype)


def param(n: int, dtype: torch.dtype, device: str, layout: str = "contiguous",
          shift: float = 0.0) -> Optional[torch.Tensor]:
    """An (n,) parameter: ``strided`` every other element of a longer vector, ``expanded`` one
    value broadcast (stride 0)."""
    if layout == "strided":
        return (torch.randn(2 * n, device=device) + shift).to(dtype)[::2]
    if layout == "expanded":
        return (torch.randn(1, device=device) + shift).to(dtype).expand(n)
    return (torch.randn(n, device=device) + shift).to(dtype)
