"""LayerNorm over the channel dimension of a contiguous ``(B, C, S)`` tensor (SAM's LayerNorm2d).

Each program owns ``BLOCK_S`` contiguous spatial positions of one batch item, so loads are
coalesced along ``S``; the statistics are reduced over ``C``. Channels that fit stay in registers
(``ONE_PASS``); otherwise a per-lane Welford pass over chunks of ``BLOCK_C`` channels, then a
normalize pass. All math in float32, one rounding at the end; offsets are int64.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

MAX_TILE = 8192
"""Elements of one register tile (BLOCK_C * BLOCK_S)."""


@triton.jit
def _ln_channels_first_kernel(
    X, W, B, Y, C, S, eps,
    ONE_PASS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
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
        off = base + ch.to(tl.int64)[:, None] * S + s[None, :]
        x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(x, axis=0) / C
        xc = tl.where(mask, x - mean[None, :], 0.0)
        rstd = tl.rsqrt(tl.sum(xc * xc, axis=0) / C + eps)
        w = tl.load(W + ch, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(B + ch, mask=cmask, other=0.0).to(tl.float32)
        y = xc * rstd[None, :] * w[:, None] + b[:, None]
        tl.store(Y + off, y.to(Y.dtype.element_ty), mask=mask)
    else:
        cnt = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
        mu = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
        m2 = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + ch
            mask = (c < C)[:, None] & smask[None, :]
            x = tl.load(X + base + c.to(tl.int64)[:, None] * S + s[None, :], mask=mask,
                        other=0.0).to(tl.float32)
            cnt += mask.to(tl.float32)
            delta = tl.where(mask, x - mu, 0.0)
            mu += delta / tl.maximum(cnt, 1.0)
            m2 += tl.where(mask, delta * (x - mu), 0.0)
        mean = tl.sum(cnt * mu, axis=0) / C
        dev = mu - mean[None, :]
        rstd = tl.rsqrt((tl.sum(m2, axis=0) + tl.sum(cnt * dev * dev, axis=0)) / C + eps)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + ch
            cmask = c < C
            mask = cmask[:, None] & smask[None, :]
            off = base + c.to(tl.int64)[:, None] * S + s[None, :]
            x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(W + c, mask=cmask, other=0.0).to(tl.float32)
            b = tl.load(B + c, mask=cmask, other=0.0).to(tl.float32)
            y = (x - mean[None, :]) * rstd[None, :] * w[:, None] + b[:, None]
            tl.store(Y + off, y.to(Y.dtype.element_ty), mask=mask)


@functools.lru_cache(maxsize=None)
def cf_config(C: int, S: int, max_tile: int) -> tuple[bool, int, int, int]:
    """``(one_pass, BLOCK_C, BLOCK_S, num_warps)`` for ``C`` channels and ``S`` positions."""
    block_s = min(64, triton.next_power_of_2(max(S, 1)))
    block_c = triton.next_power_of_2(max(C, 1))
    one_pass = block_c * block_s <= max_tile
    if not one_pass:
        block_c = max(1, max_tile // (4 * block_s))
    num_warps = max(1, min(8, block_c * block_s // 512))
    return one_pass, block_c, block_s, num_warps


def layer_norm_channels_first(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                              eps: float) -> torch.Tensor:
    """LayerNorm over dim 1 of contiguous ``(B, C, S)``; returns ``(B, C, S)`` of x.dtype."""
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    nb, C, S = x.shape
    if y.numel() == 0:
        return y
    one_pass, block_c, block_s, num_warps = cf_config(C, S, MAX_TILE)
    grid = (triton.cdiv(S, block_s) * nb,)
    _ln_channels_first_kernel[grid](x, weight, bias, y, C, S, eps, ONE_PASS=one_pass,
                                    BLOCK_C=block_c, BLOCK_S=block_s, num_warps=num_warps)
    return y
