"""LayerNorm over the channel dimension of a contiguous ``(B, C, S)`` tensor (SAM's LayerNorm2d).

Each program owns ``BLOCK_S`` contiguous spatial positions of one batch item, so loads are
coalesced along ``S``; the statistics are reduced over ``C``. Channels that fit stay in registers
(``ONE_PASS``); otherwise a pass over chunks of ``BLOCK_C`` channels accumulates sums shifted by
channel 0 (stable for any mean), then a normalize pass re-reads the chunks. All math in float32,
one rounding at the end; offsets are int64.
"""
from __future__ import annotations

import functools

import torch

import triton
import triton.language as tl

from .rounding import RTNE_BY_HAND, to_storage

MAX_TILE = 16384
"""Elements of one register tile (BLOCK_C * BLOCK_S)."""
CHUNK_TILE = 16384
"""Elements of one chunk of the two-pass kernel when the grid fits in one wave (one program per
multiprocessor: each program's slab is re-read from L2); half that otherwise."""
MIN_PROGRAMS = 1024
"""One-pass kernel: positions per program shrink (down to 8) until the grid has about this many
programs."""
MAX_STREAM_S = 128
"""Two-pass kernel: at most this many positions per program (256-byte row segments in bf16)."""


@functools.lru_cache(maxsize=None)
def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


@triton.jit
def _ln_channels_first_kernel(
    X, W, B, Y, C, S, eps,
    ONE_PASS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, RTNE_BY_HAND: tl.constexpr,
):
    """x, y: (B, C, S) contiguous; grid (B * cdiv(S, BLOCK_S),)."""
    pid = tl.program_id(0).to(tl.int64)
    n_sb = tl.cdiv(S, BLOCK_S)
    s = (pid % n_sb) * BLOCK_S + tl.arange(0, BLOCK_S)
    smask = s < S
    base = (pid // n_sb) * C * S
    ch = tl.arange(0, BLOCK_C)
    if ONE_PASS:
        cmask = ch < C
        mask = cmask[:, None] & smask[None, :]
        w = tl.load(W + ch, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(B + ch, mask=cmask, other=0.0).to(tl.float32)
        off = base + ch.to(tl.int64)[:, None] * S + s[None, :]
        x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(x, axis=0) / C
        xc = tl.where(mask, x - mean[None, :], 0.0)
        rstd = tl.rsqrt(tl.sum(xc * xc, axis=0) / C + eps)
        y = xc * rstd[None, :] * w[:, None] + b[:, None]
        tl.store(Y + off, to_storage(y, Y.dtype.element_ty, RTNE_BY_HAND), mask=mask)
    else:
        shift = tl.load(X + base + s, mask=smask, other=0.0).to(tl.float32)
        acc = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
        acc2 = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + ch
            mask = (c < C)[:, None] & smask[None, :]
            x = tl.load(X + base + c.to(tl.int64)[:, None] * S + s[None, :], mask=mask,
                        other=0.0).to(tl.float32)
            d = tl.where(mask, x - shift[None, :], 0.0)
            acc += d
            acc2 += d * d
        dmean = tl.sum(acc, axis=0) / C
        var = tl.maximum(tl.sum(acc2, axis=0) / C - dmean * dmean, 0.0)
        mean = shift + dmean
        rstd = tl.rsqrt(var + eps)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + ch
            cmask = c < C
            mask = cmask[:, None] & smask[None, :]
            w = tl.load(W + c, mask=cmask, other=0.0).to(tl.float32)
            b = tl.load(B + c, mask=cmask, other=0.0).to(tl.float32)
            off = base + c.to(tl.int64)[:, None] * S + s[None, :]
            x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
            y = (x - mean[None, :]) * rstd[None, :] * w[:, None] + b[:, None]
            tl.store(Y + off, to_storage(y, Y.dtype.element_ty, RTNE_BY_HAND), mask=mask)


@functools.lru_cache(maxsize=None)
def cf_config(C: int, S: int, nb: int, max_tile: int, chunk_tile: int,
              n_sm: int = 1) -> tuple[bool, int, int, int]:
    """``(one_pass, BLOCK_C, BLOCK_S, num_warps)`` for ``nb`` items of ``C`` channels, ``S``
    positions, on ``n_sm`` multiprocessors.

    Channels that fit a register tile take one pass, unless the tile would hold fewer than 16
    positions (row segments of 16 bytes or less waste most of each memory transaction).
    Otherwise each program owns about ``nb * S / n_sm`` positions (a power of two in
    [8, MAX_STREAM_S]): one or two programs per multiprocessor, long row segments, and the second
    pass re-reads a program's slab from L2 (configurations compared in
    benchmarks/results/NOTES-triton.md)."""
    block_s = min(64, triton.next_power_of_2(max(S, 1)))
    while block_s > 8 and nb * triton.cdiv(S, block_s) < MIN_PROGRAMS:
        block_s //= 2
    block_c = triton.next_power_of_2(max(C, 1))
    per_sm = nb * S / n_sm
    stream_s = 8
    while stream_s < MAX_STREAM_S and stream_s * 1.5 < per_sm:
        stream_s *= 2
    if block_c * block_s <= max_tile and (block_c * 16 <= max_tile or block_s >= min(stream_s, S)):
        return True, block_c, block_s, max(1, min(16, block_c * block_s // 512))
    block_s = stream_s
    one_wave = nb * triton.cdiv(S, block_s) <= n_sm
    block_c = max(1, (chunk_tile if one_wave else chunk_tile // 2) // block_s)
    return False, block_c, block_s, 8


def layer_norm_channels_first(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                              eps: float) -> torch.Tensor:
    """LayerNorm over dim 1 of contiguous ``(B, C, S)``; returns ``(B, C, S)`` of x.dtype."""
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    nb, C, S = x.shape
    if y.numel() == 0:
        return y
    one_pass, block_c, block_s, num_warps = cf_config(C, S, nb, MAX_TILE, CHUNK_TILE,
                                                      _num_sms(x.device))
    grid = (triton.cdiv(S, block_s) * nb,)
    _ln_channels_first_kernel[grid](x, weight, bias, y, C, S, eps, ONE_PASS=one_pass,
                                    BLOCK_C=block_c, BLOCK_S=block_s, RTNE_BY_HAND=RTNE_BY_HAND,
                                    num_warps=num_warps)
    return y
