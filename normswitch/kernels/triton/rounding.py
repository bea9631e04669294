"""Rounding float32 results to the storage dtype, the same under Triton's interpreter as on a GPU."""
from __future__ import annotations

import os

import triton
import triton.language as tl

RTNE_BY_HAND = os.environ.get("TRITON_INTERPRET", "0") == "1"
"""Triton's interpreter converts float32 to bfloat16 by truncation, where a GPU rounds to
nearest even; under the interpreter the kernels round on the bits first, so that the CPU tests
check what the GPU computes. (The kernels read ``TRITON_INTERPRET`` when decorated, too.)"""


@triton.jit
def to_storage(v, DTYPE: tl.constexpr, BY_HAND: tl.constexpr):
    """``v`` (float32) rounded to nearest, ties to even, into ``DTYPE``."""
    if BY_HAND and DTYPE == tl.bfloat16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16  # exact in bfloat16 now
        v = tl.where(v != v, v, bits.to(tl.float32, bitcast=True))  # NaN stays NaN
    return v.to(DTYPE)
