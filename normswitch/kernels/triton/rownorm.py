"""The row-norm kernel family: RMSNorm, LayerNorm, fused add+RMSNorm and the gated norm.

One parametrized pair of kernels serves every last-dimension op. A *row* is one group of ``G``
contiguous elements: row ``r`` is group ``g = r % n_groups`` of input row ``m = r // n_groups``
(``n_groups == 1`` for the plain norms). Constexpr switches select the math:

- ``IS_RMS``: ``var = mean(x^2)``, no centering (else LayerNorm: centered variance);
- ``HAS_RES``: ``x = round(x + residual)`` in the residual-out dtype, stored to ``RO``;
- ``HAS_Z``/``GATE_FIRST``: ``silu(z)`` applied to ``x`` before the norm, or to ``y`` after it;
- ``ROUND_XHAT``: the normalized value is rounded to the output dtype before the weight (HF order);
- ``STORE_MEAN``/``STORE_RSTD``: float32 statistics at index ``g * M + m`` (group-major).

``_rownorm_fused_kernel`` keeps ``BLOCK_M`` rows of ``BLOCK_N >= G`` elements in registers.
``_rownorm_looped_kernel`` handles one row per program in chunks of ``BLOCK_N`` for any ``G``:
a per-lane Welford pass for the statistics, then a normalize pass. All offsets are int64.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .rounding import to_storage


@triton.jit
def _silu(z):
    return z / (1.0 + tl.exp(-z))


@triton.jit
def _finish(xhat, w, b, Y_TY: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
            ROUND_XHAT: tl.constexpr, RTNE_BY_HAND: tl.constexpr):
    """``round?(xhat) * w + b`` with ``w`` (offset included) and ``b`` already in float32."""
    if ROUND_XHAT:
        xhat = to_storage(xhat, Y_TY, RTNE_BY_HAND).to(tl.float32)
    if HAS_W:
        xhat = xhat * w
    if HAS_B:
        xhat = xhat + b
    return xhat


@triton.jit
def _param(P, off, mask, HAS: tl.constexpr, shift):
    """``P[off] + shift`` as float32 (0 where masked); a placeholder 0.0 when ``HAS`` is False."""
    if HAS:
        v = tl.load(P + off, mask=mask, other=0.0).to(tl.float32) + shift
    else:
        v = 0.0
    return v


@triton.jit(do_not_specialize=["M", "n_groups"])
def _rownorm_fused_kernel(
    X, R, RO, Z, W, B, Y, MEAN, RSTD,
    M, n_groups, G, sx, sr, sro, sz, sy,
    eps, w_offset,
    IS_RMS: tl.constexpr, HAS_RES: tl.constexpr, HAS_Z: tl.constexpr, GATE_FIRST: tl.constexpr,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, ROUND_XHAT: tl.constexpr, GROUPED: tl.constexpr,
    STORE_MEAN: tl.constexpr, STORE_RSTD: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PARAMS_FIRST: tl.constexpr,
    RTNE_BY_HAND: tl.constexpr,
):
    """Rows of ``G <= BLOCK_N`` elements, ``BLOCK_M`` rows per program, all in registers.

    ``PARAMS_FIRST`` issues the weight/bias loads with the row's (small grids: one DRAM round trip
    less on the critical path); else after the reduction (large grids: fewer live registers).
    Only the load order differs, never the arithmetic."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M.to(tl.int64) * n_groups
    if GROUPED:
        m = rows // n_groups
        g = rows % n_groups
    else:
        m = rows
        g = rows * 0
    cols = tl.arange(0, BLOCK_N)
    cmask = cols < G
    mask = rmask[:, None] & cmask[None, :]
    c_off = (g * G)[:, None] + cols[None, :]
    if GROUPED:
        p_off = c_off
        p_mask = mask
    else:
        p_off = cols[None, :]
        p_mask = cmask[None, :]
    if PARAMS_FIRST:
        w = _param(W, p_off, p_mask, HAS_W, w_offset)
        b = _param(B, p_off, p_mask, HAS_B, 0.0)
    x = tl.load(X + m[:, None] * sx + c_off, mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        r = tl.load(R + m[:, None] * sr + c_off, mask=mask, other=0.0)
        x = to_storage(x + r.to(tl.float32), RO.dtype.element_ty, RTNE_BY_HAND)
        tl.store(RO + m[:, None] * sro + c_off, x, mask=mask)
        x = x.to(tl.float32)
    if HAS_Z:
        z = tl.load(Z + m[:, None] * sz + c_off, mask=mask, other=0.0).to(tl.float32)
        if GATE_FIRST:
            x = x * _silu(z)
    if IS_RMS:
        var = tl.sum(x * x, axis=1) / G
        xc = x
    else:
        mean = tl.sum(x, axis=1) / G
        xc = tl.where(mask, x - mean[:, None], 0.0)
        var = tl.sum(xc * xc, axis=1) / G
    rstd = tl.rsqrt(var + eps)
    if not PARAMS_FIRST:
        w = _param(W, p_off, p_mask, HAS_W, w_offset)
        b = _param(B, p_off, p_mask, HAS_B, 0.0)
    y = _finish(xc * rstd[:, None], w, b, Y.dtype.element_ty, HAS_W, HAS_B, ROUND_XHAT, RTNE_BY_HAND)
    if HAS_Z:
        if not GATE_FIRST:
            y = y * _silu(z)
    tl.store(Y + m[:, None] * sy + c_off, to_storage(y, Y.dtype.element_ty, RTNE_BY_HAND), mask=mask)
    stat = g * M + m
    if STORE_MEAN:
        tl.store(MEAN + stat, mean, mask=rmask)
    if STORE_RSTD:
        tl.store(RSTD + stat, rstd, mask=rmask)


@triton.jit
def _load_source(X, R, RO, Z, x_row, r_row, ro_row, z_row, idx, cmask,
                 HAS_RES: tl.constexpr, STORE_RO: tl.constexpr, HAS_Z: tl.constexpr,
                 GATE_FIRST: tl.constexpr, RTNE_BY_HAND: tl.constexpr):
    """One chunk of the row's normalized input (x, or round(x + r), times silu(z) when gate-first)."""
    x = tl.load(X + x_row + idx, mask=cmask, other=0.0).to(tl.float32)
    if HAS_RES:
        r = tl.load(R + r_row + idx, mask=cmask, other=0.0).to(tl.float32)
        x = to_storage(x + r, RO.dtype.element_ty, RTNE_BY_HAND)
        if STORE_RO:
            tl.store(RO + ro_row + idx, x, mask=cmask)
        x = x.to(tl.float32)
    if HAS_Z:
        if GATE_FIRST:
            z = tl.load(Z + z_row + idx, mask=cmask, other=0.0).to(tl.float32)
            x = x * _silu(z)
    return x


@triton.jit(do_not_specialize=["M", "n_groups"])
def _rownorm_looped_kernel(
    X, R, RO, Z, W, B, Y, MEAN, RSTD,
    M, n_groups, G, sx, sr, sro, sz, sy,
    eps, w_offset,
    IS_RMS: tl.constexpr, HAS_RES: tl.constexpr, HAS_Z: tl.constexpr, GATE_FIRST: tl.constexpr,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, ROUND_XHAT: tl.constexpr, GROUPED: tl.constexpr,
    STORE_MEAN: tl.constexpr, STORE_RSTD: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PARAMS_FIRST: tl.constexpr,
    RTNE_BY_HAND: tl.constexpr,
):
    """One row of any length ``G`` per program, in chunks of ``BLOCK_N`` (``BLOCK_M`` is 1).

    Takes the fused kernel's arguments; ``PARAMS_FIRST`` has no effect here (parameters are loaded
    per chunk, beside the row's chunk)."""
    row = tl.program_id(0).to(tl.int64)
    if GROUPED:
        m = row // n_groups
        g = row % n_groups
    else:
        m = row
        g = row * 0
    c0 = g * G
    x_row = m * sx + c0
    r_row = m * sr + c0
    ro_row = m * sro + c0
    z_row = m * sz + c0
    y_row = m * sy + c0
    cols = tl.arange(0, BLOCK_N)
    cnt = tl.zeros([BLOCK_N], dtype=tl.float32)
    mu = tl.zeros([BLOCK_N], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_N], dtype=tl.float32)
    for start in range(0, G, BLOCK_N):
        idx = start + cols
        cmask = idx < G
        x = _load_source(X, R, RO, Z, x_row, r_row, ro_row, z_row, idx, cmask,
                         HAS_RES, True, HAS_Z, GATE_FIRST, RTNE_BY_HAND)
        if IS_RMS:
            m2 += x * x
        else:
            cnt += cmask.to(tl.float32)
            delta = tl.where(cmask, x - mu, 0.0)
            mu += delta / tl.maximum(cnt, 1.0)
            m2 += tl.where(cmask, delta * (x - mu), 0.0)
    if IS_RMS:
        mean = 0.0
        var = tl.sum(m2, axis=0) / G
    else:
        mean = tl.sum(cnt * mu, axis=0) / G
        dev = mu - mean
        var = (tl.sum(m2, axis=0) + tl.sum(cnt * dev * dev, axis=0)) / G
    rstd = tl.rsqrt(var + eps)
    for start in range(0, G, BLOCK_N):
        idx = start + cols
        cmask = idx < G
        w = _param(W, c0 + idx, cmask, HAS_W, w_offset)
        b = _param(B, c0 + idx, cmask, HAS_B, 0.0)
        if HAS_RES:
            x = tl.load(RO + ro_row + idx, mask=cmask, other=0.0).to(tl.float32)
            if HAS_Z:
                if GATE_FIRST:
                    z = tl.load(Z + z_row + idx, mask=cmask, other=0.0).to(tl.float32)
                    x = x * _silu(z)
        else:
            x = _load_source(X, R, RO, Z, x_row, r_row, ro_row, z_row, idx, cmask,
                             False, False, HAS_Z, GATE_FIRST, RTNE_BY_HAND)
        y = _finish((x - mean) * rstd, w, b, Y.dtype.element_ty, HAS_W, HAS_B, ROUND_XHAT,
                    RTNE_BY_HAND)
        if HAS_Z:
            if not GATE_FIRST:
                z = tl.load(Z + z_row + idx, mask=cmask, other=0.0).to(tl.float32)
                y = y * _silu(z)
        tl.store(Y + y_row + idx, to_storage(y, Y.dtype.element_ty, RTNE_BY_HAND), mask=cmask)
    stat = g * M + m
    if STORE_MEAN:
        tl.store(MEAN + stat, mean)
    if STORE_RSTD:
        tl.store(RSTD + stat, rstd)
