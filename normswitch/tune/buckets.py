"""Row buckets: the ranges of M (rows of the call) that one tuned choice serves.

A kind of call (op, dtype, hidden size, group size, features) gets one tuned backend per
bucket: ``1``, ``2-16``, ``17-64``, ``65-512``, ``513-4096`` and ``4097+`` rows. The winner
changes with M (launch cost dominates at decode sizes, bandwidth at prefill sizes), and these
ranges separate the regimes the benchmark grid samples (M = 1, 16, 64, 256, 4096, 32768).
"""
from __future__ import annotations

UPPER = (1, 16, 64, 512, 4096)
"""Inclusive upper bound of each bucket but the last (which is unbounded)."""
LABELS = ("1", "2-16", "17-64", "65-512", "513-4096", "4097+")
"""One label per bucket, in order; used in tuning files, ``normswitch info`` and metrics."""


def index(rows: int) -> int:
    """The bucket of a call with ``rows`` rows (0 for 1 row, ..., 5 for more than 4096)."""
    for i, upper in enumerate(UPPER):
        if rows <= upper:
            return i
    return len(UPPER)


def label(i: int) -> str:
    """The label of bucket ``i``."""
    return LABELS[i]


def of_label(text: str) -> int:
    """The bucket index of a label; raises ``ValueError`` for an unknown one."""
    return LABELS.index(text)


def expression(rows: str) -> str:
    """Python source computing :func:`index` of the expression ``rows`` without a call (the
    fast path's key is generated code, and a function call there costs more than the compares)."""
    parts = [f"{i} if {rows} <= {upper} else" for i, upper in enumerate(UPPER)]
    return "(" + " ".join(parts) + f" {len(UPPER)})"
