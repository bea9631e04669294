"""LayerNorm over the channel dimension of a contiguous ``(B, C, S)`` tensor (SAM's LayerNorm2d).

A program owns one tile of ``BLOCK_C`` channels x ``BLOCK_S`` contiguous positions of one batch
item, so loads are coalesced along ``S``. The launch configuration depends on ``C`` and the dtype,
never on ``S`` or ``B``: each position's statistics are reduced in the same order whatever the image
size or batch, so a position's result is bitwise the same in any batch (batch invariance).

- ``C <= ONE_PASS_MAX_C``: one kernel; the tile holds every channel, mean and variance are
  reduced from registers, then normalized.
- wider: the channels are split into ``K = cdiv(C, BLOCK_C)`` chunks and the tiles of one
  position block spread over ``K`` programs (parallel even for few positions). A statistics
  kernel stores each chunk's mean and sum of squared deviations (float32, ``(2, B, K, S)``);
  an apply kernel merges a position's ``K`` partials in chunk order (Chan's pairwise update:
  stable for any mean) and normalizes its tile.

All math in float32, one rounding at the end; offsets are int64.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch

import triton
import triton.language as tl

from .rounding import RTNE_BY_HAND, to_storage

ONE_PASS_MAX_C = 512
"""Channels held by one program's register tile; wider inputs take the split kernels."""
CHUNK_CHOICES = (512, 256)
"""Channels per chunk of the split kernels: the one that pads ``C`` least, the widest on a tie."""
ONE_PASS_ROW_BYTES = 64
"""Bytes of one channel's contiguous positions in a one-pass tile (32 positions in 16-bit dtypes)."""
SPLIT_ROW_BYTES = 128
"""Bytes of one channel's contiguous positions in a split tile (64 positions in 16-bit dtypes)."""
SPLIT_WARPS = 4


class CfConfig(NamedTuple):
    """Launch configuration of the channels-first kernels (a function of ``C`` and the dtype)."""

    split: bool
    block_c: int
    block_s: int
    num_warps: int


@functools.lru_cache(maxsize=None)
def cf_config(C: int, itemsize: int = 2, one_pass_max_c: int = ONE_PASS_MAX_C,
              chunks: tuple[int, ...] = CHUNK_CHOICES) -> CfConfig:
    """The configuration for ``C`` channels of ``itemsize``-byte elements: one pass when they
    fit ``one_pass_max_c``, else chunks of the width in ``chunks`` that leaves the fewest padded
    lanes; a tile's row segment has a fixed byte width, so float32 tiles hold half the positions
    (shapes and warps from an A/B sweep: benchmarks/ab_channels_first.py)."""
    if C <= one_pass_max_c:
        block_c = triton.next_power_of_2(max(C, 1))
        block_s = ONE_PASS_ROW_BYTES // itemsize
        warps = max(1, min(8, block_c * block_s // 2048))
        return CfConfig(False, block_c, block_s, warps)
    block_c = min(chunks, key=lambda c: (triton.cdiv(C, c) * c - C, -c))
    return CfConfig(True, block_c, SPLIT_ROW_BYTES // itemsize, SPLIT_WARPS)


@triton.jit
def _tile(C, S, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Offsets and mask of this program's tile; program ids are (position block x item, chunk)."""
    pid = tl.program_id(0).to(tl.int64)
    n_sb = tl.cdiv(S, BLOCK_S)
    item = pid // n_sb
    s = (pid % n_sb) * BLOCK_S + tl.arange(0, BLOCK_S)
    c = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    smask = s < S
    off = item * C * S + c[:, None] * S + s[None, :]
    return item, s, smask, c, cmask, off, cmask[:, None] & smask[None, :]


@triton.jit
def _cf_one_pass_kernel(X, W, B, Y, C, S, eps,
                        BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, RTNE_BY_HAND: tl.constexpr):
    """Grid ``(B * cdiv(S, BLOCK_S), 1)``; ``BLOCK_C >= C``."""
    _, _, _, c, cmask, off, mask = _tile(C, S, BLOCK_C, BLOCK_S)
    x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / C
    xc = tl.where(mask, x - mean[None, :], 0.0)
    rstd = tl.rsqrt(tl.sum(xc * xc, axis=0) / C + eps)
    w = tl.load(W + c, mask=cmask, other=0.0).to(tl.float32)
    b = tl.load(B + c, mask=cmask, other=0.0).to(tl.float32)
    y = xc * rstd[None, :] * w[:, None] + b[:, None]
    tl.store(Y + off, to_storage(y, Y.dtype.element_ty, RTNE_BY_HAND), mask=mask)


@triton.jit
def _cf_stats_kernel(X, P, C, S, K, PLANE, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Grid ``(B * cdiv(S, BLOCK_S), K)``: chunk mean and sum of squared deviations into ``P``
    (float32 ``(2, B, K, S)``, ``PLANE = B * K * S``)."""
    item, s, smask, c, cmask, off, mask = _tile(C, S, BLOCK_C, BLOCK_S)
    n = tl.minimum(C - tl.program_id(1) * BLOCK_C, BLOCK_C).to(tl.float32)
    x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / n
    xc = tl.where(mask, x - mean[None, :], 0.0)
    m2 = tl.sum(xc * xc, axis=0)
    p = (item * K + tl.program_id(1)) * S + s
    tl.store(P + p, mean, mask=smask)
    tl.store(P + PLANE + p, m2, mask=smask)


@triton.jit
def _cf_apply_kernel(X, W, B, Y, P, C, S, K, PLANE, eps,
                     BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, RTNE_BY_HAND: tl.constexpr):
    """Grid ``(B * cdiv(S, BLOCK_S), K)``: merge the ``K`` partials of each position in chunk
    order, then normalize this program's tile."""
    item, s, smask, c, cmask, off, mask = _tile(C, S, BLOCK_C, BLOCK_S)
    p = item * K * S + s
    mean = tl.load(P + p, mask=smask, other=0.0)
    m2 = tl.load(P + PLANE + p, mask=smask, other=0.0)
    count = tl.zeros_like(mean) + BLOCK_C
    for j in range(1, K):
        nj = tl.minimum(C - j * BLOCK_C, BLOCK_C).to(tl.float32)
        mj = tl.load(P + p + j * S, mask=smask, other=0.0)
        qj = tl.load(P + PLANE + p + j * S, mask=smask, other=0.0)
        total = count + nj
        d = mj - mean
        mean = mean + d * (nj / total)
        m2 = m2 + qj + d * d * (count * nj / total)
        count = total
    rstd = tl.rsqrt(m2 / C + eps)
    w = tl.load(W + c, mask=cmask, other=0.0).to(tl.float32)
    b = tl.load(B + c, mask=cmask, other=0.0).to(tl.float32)
    x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
    y = (x - mean[None, :]) * rstd[None, :] * w[:, None] + b[:, None]
    tl.store(Y + off, to_storage(y, Y.dtype.element_ty, RTNE_BY_HAND), mask=mask)


def launch_channels_first(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, y: torch.Tensor,
                          eps: float, config: CfConfig) -> None:
    """Normalize contiguous ``x`` (B, C, S) over C into ``y`` with ``config``."""
    nb, C, S = x.shape
    grid0 = triton.cdiv(S, config.block_s) * nb
    if not config.split:
        _cf_one_pass_kernel[(grid0, 1)](x, weight, bias, y, C, S, eps, BLOCK_C=config.block_c,
                                        BLOCK_S=config.block_s, RTNE_BY_HAND=RTNE_BY_HAND,
                                        num_warps=config.num_warps)
        return
    k = triton.cdiv(C, config.block_c)
    partials = torch.empty((2, nb, k, S), dtype=torch.float32, device=x.device)
    plane = nb * k * S
    _cf_stats_kernel[(grid0, k)](x, partials, C, S, k, plane, BLOCK_C=config.block_c,
                                 BLOCK_S=config.block_s, num_warps=config.num_warps)
    _cf_apply_kernel[(grid0, k)](x, weight, bias, y, partials, C, S, k, plane, eps,
                                 BLOCK_C=config.block_c, BLOCK_S=config.block_s,
                                 RTNE_BY_HAND=RTNE_BY_HAND, num_warps=config.num_warps)


def layer_norm_channels_first(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                              eps: float) -> torch.Tensor:
    """LayerNorm over dim 1 of contiguous ``(B, C, S)``; returns ``(B, C, S)`` of x.dtype."""
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if y.numel():
        launch_channels_first(x, weight, bias, y, eps, cf_config(x.shape[1], x.element_size(),
                                                                 ONE_PASS_MAX_C, CHUNK_CHOICES))
    return y
