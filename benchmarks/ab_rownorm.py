"""A/B experiments on the row-norm kernel's code generation (H200, bf16, CUDA-graph replays).

A variant of ``_rownorm_fused_kernel`` (rms_norm in HF order, LayerNorm, gate-first gated RMS
norm) with constexpr switches for the hypotheses of NOTES-triton.md:
``EVICT`` (L2 eviction hints), ``IDX64`` (int64 offsets), ``ONE_D`` (1-D tile, no row mask),
``TAIL`` (a row as a power-of-two block plus a tail block: N = 1280 = 1024 + 256, no padding),
``LN_ONEPASS`` (LayerNorm statistics from one pass of sum and sum of squares: removes the
second, dependent block reduction) and ``NO_REDUCE`` (rstd = 1: the same loads and stores
without the reduction). Liger-Kernel and FLA, when importable, are timed the same way.
Prints one line per (case, variant) and writes JSON rows.
Usage: ``python benchmarks/ab_rownorm.py [--json FILE] [--only rms,ln,gated]``
(channels-first: ``ab_channels_first.py``).
"""
from __future__ import annotations

import argparse
import json

import torch
import triton
import triton.language as tl
from triton.testing import do_bench

from normswitch.kernels.triton import launch


@triton.jit
def _ld(P, off, mask, EVICT: tl.constexpr, POLICY: tl.constexpr):
    if EVICT:
        v = tl.load(P + off, mask=mask, other=0.0, eviction_policy=POLICY)
    else:
        v = tl.load(P + off, mask=mask, other=0.0)
    return v.to(tl.float32)


@triton.jit
def _ldx(P, off, EVICT: tl.constexpr, POLICY: tl.constexpr):
    if EVICT:
        v = tl.load(P + off, eviction_policy=POLICY)
    else:
        v = tl.load(P + off)
    return v.to(tl.float32)


@triton.jit
def _ab_part(X, Z, W, B, rows, rmask, cols, N, sx, HAS_Z: tl.constexpr, HAS_B: tl.constexpr,
             EVICT: tl.constexpr, ONE_D: tl.constexpr, EXACT: tl.constexpr):
    if ONE_D:
        cm = cols < N
        if EXACT:
            off = rows * sx + cols
            x = _ldx(X, off, EVICT, "evict_first")
            w = _ldx(W, cols, EVICT, "evict_last")
            if HAS_B:
                b = _ldx(B, cols, EVICT, "evict_last")
            else:
                b = 0.0
            if HAS_Z:
                z = _ldx(Z, off, EVICT, "evict_first")
                x = x * (z / (1.0 + tl.exp(-z)))
        else:
            off = rows * sx + cols
            x = _ld(X, off, cm, EVICT, "evict_first")
            w = _ld(W, cols, cm, EVICT, "evict_last")
            if HAS_B:
                b = _ld(B, cols, cm, EVICT, "evict_last")
            else:
                b = 0.0
            if HAS_Z:
                z = _ld(Z, off, cm, EVICT, "evict_first")
                x = x * (z / (1.0 + tl.exp(-z)))
    else:
        cm = cols[None, :] < N
        mask = rmask[:, None] & cm
        off = rows[:, None] * sx + cols[None, :]
        x = _ld(X, off, mask, EVICT, "evict_first")
        w = _ld(W, cols[None, :], cm, EVICT, "evict_last")
        if HAS_B:
            b = _ld(B, cols[None, :], cm, EVICT, "evict_last")
        else:
            b = 0.0
        if HAS_Z:
            z = _ld(Z, off, mask, EVICT, "evict_first")
            x = x * (z / (1.0 + tl.exp(-z)))
    return x, w, b, off, cm


@triton.jit
def _ab_kernel(X, Z, W, B, Y, RSTD, M, N, sx, eps,
               IS_RMS: tl.constexpr, HAS_Z: tl.constexpr, HAS_B: tl.constexpr,
               ROUND_XHAT: tl.constexpr, EVICT: tl.constexpr, IDX64: tl.constexpr,
               ONE_D: tl.constexpr, TAIL: tl.constexpr, LN_ONEPASS: tl.constexpr,
               NO_REDUCE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               AX: tl.constexpr):
    pid = tl.program_id(0)
    if IDX64:
        pid = pid.to(tl.int64)
    if ONE_D:
        rows = pid
        rmask = None
    else:
        rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
        rmask = rows < M
    cols = tl.arange(0, BLOCK_N)
    x, w, b, off, cm = _ab_part(X, Z, W, B, rows, rmask, cols, N, sx, HAS_Z, HAS_B, EVICT,
                                ONE_D, TAIL > 0)
    s1 = tl.sum(x, axis=AX)
    s2 = tl.sum(x * x, axis=AX)
    if TAIL > 0:
        cols_t = BLOCK_N + tl.arange(0, TAIL)
        xt, wt, bt, off_t, cm_t = _ab_part(X, Z, W, B, rows, rmask, cols_t, N, sx, HAS_Z, HAS_B,
                                           EVICT, ONE_D, True)
        s1 += tl.sum(xt, axis=AX)
        s2 += tl.sum(xt * xt, axis=AX)
    if IS_RMS:
        mean = 0.0
        rstd = tl.rsqrt(s2 / N + eps)
    elif LN_ONEPASS:
        mean = s1 / N
        rstd = tl.rsqrt(tl.maximum(s2 / N - mean * mean, 0.0) + eps)
    else:
        mean = s1 / N
        if ONE_D:
            xc = tl.where(cm, x - mean, 0.0)
            v = tl.sum(xc * xc, axis=AX)
        else:
            xc = tl.where(rmask[:, None] & cm, x - mean[:, None], 0.0)
            v = tl.sum(xc * xc, axis=AX)
        if TAIL > 0:
            v += tl.sum((xt - mean) * (xt - mean), axis=AX)
        rstd = tl.rsqrt(v / N + eps)
    if NO_REDUCE:
        rstd = rstd * 0.0 + 1.0
        mean = mean * 0.0
    if ONE_D:
        xh = (x - mean) * rstd
    elif IS_RMS:
        xh = x * rstd[:, None]
    else:
        xh = (x - mean[:, None]) * rstd[:, None]
    if ROUND_XHAT:
        xh = xh.to(Y.dtype.element_ty).to(tl.float32)
    y = xh * w + b
    if TAIL > 0:
        tl.store(Y + off, y.to(Y.dtype.element_ty))
    elif ONE_D:
        tl.store(Y + off, y.to(Y.dtype.element_ty), mask=cm)
    else:
        tl.store(Y + off, y.to(Y.dtype.element_ty), mask=rmask[:, None] & cm)
    if TAIL > 0:
        yt = (xt - mean) * rstd
        if ROUND_XHAT:
            yt = yt.to(Y.dtype.element_ty).to(tl.float32)
        tl.store(Y + off_t, (yt * wt + bt).to(Y.dtype.element_ty))
    if HAS_Z:
        tl.store(RSTD + rows, rstd, mask=rmask)


SHARD = [0, 1, False]
"""(index, count, compile_only): with count > 1, this process runs every count-th variant only;
compile_only runs each once (fills Triton's cache for a later timing run) and times nothing."""
_seen = [0]


def graph_us(fn) -> float:
    """do_bench median (us) of a CUDA-graph replay of ``fn``; None when sharded away."""
    _seen[0] += 1
    if SHARD[1] > 1 and _seen[0] % SHARD[1] != SHARD[0]:
        return None
    fn()
    if SHARD[2]:
        return None
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return 1e3 * do_bench(g.replay, warmup=10, rep=8, return_mode="median")


def ab_fn(t, op, v):
    x, w, y = t["x"], t["w"], t["y"]
    M, N = x.shape
    block_m = v.get("bm", 1)
    tail = v.get("tail", 0)
    block_n = N - tail if tail else triton.next_power_of_2(N)
    kw = dict(IS_RMS=op != "ln", HAS_Z=op == "gated", HAS_B=op == "ln", ROUND_XHAT=op == "rms",
              EVICT=v.get("evict", True), IDX64=v.get("idx64", True), ONE_D=v.get("one_d", False),
              TAIL=tail, LN_ONEPASS=v.get("onepass", False), NO_REDUCE=v.get("noreduce", False),
              BLOCK_M=block_m, BLOCK_N=block_n, AX=0 if v.get("one_d") else 1,
              num_warps=v["warps"])
    z = t.get("z", x)
    b = t.get("b", w)
    rstd = t.get("rstd", y)
    grid = (triton.cdiv(M, block_m),)

    def fn():
        _ab_kernel[grid](x, z, w, b, y, rstd, M, N, x.stride(0), 1e-6, **kw)
    return fn


def prod_fn(t, op):
    x, w, y = t["x"], t["w"], t["y"]
    if op == "rms":
        return lambda: launch.launch_rownorm(x, y, weight=w, is_rms=True, round_xhat=True, eps=1e-6)
    if op == "ln":
        return lambda: launch.launch_rownorm(x, y, weight=w, bias=t["b"], is_rms=False, eps=1e-6)
    return lambda: launch.launch_rownorm(x, y, weight=w, z=t["z"], gate_first=True, is_rms=True,
                                         eps=1e-6, rstd=t["rstd"])


def peer_fn(t, op):
    x, w = t["x"], t["w"]
    try:
        if op == "rms":
            from liger_kernel.ops.rms_norm import rms_norm_forward
            return "liger", lambda: rms_norm_forward(x, w, 1e-6, 0.0, "llama", None)
        if op == "ln":
            from liger_kernel.ops.layer_norm import layer_norm_forward
            return "liger", lambda: layer_norm_forward(x, w, t["b"], 1e-6)
        from fla.modules.norm.layernorm_gated import layer_norm_fwd
        return "fla", lambda: layer_norm_fwd(x, w, None, 1e-6, t["z"], None, None, False, True)
    except Exception as exc:  # optional peers
        print("peer unavailable:", type(exc).__name__, exc)
        return None, None


def reference(t, op):
    x = t["x"].float()
    if op == "gated":
        x = x * torch.nn.functional.silu(t["z"].float())
    if op == "ln":
        return torch.nn.functional.layer_norm(x, x.shape[-1:], t["w"].float(), t["b"].float(), 1e-6)
    xh = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    if op == "rms":
        xh = xh.to(t["x"].dtype).float()
    return xh * t["w"].float()


def variants(op, N):
    dw = launch.row_config(N, launch.MAX_FUSED_N, launch.LOOP_BLOCK_N)[3]
    base = dict(warps=dw)
    out = {"base": base, "noevict": dict(base, evict=False), "idx32": dict(base, idx64=False),
           "1d": dict(base, one_d=True),
           "1d+idx32+noevict": dict(base, one_d=True, idx64=False, evict=False),
           "noreduce": dict(base, noreduce=True)}
    for wp in (4, 8, 16, 32):
        if wp != dw and 2 <= triton.next_power_of_2(N) // (32 * wp) <= 64:
            out[f"1d+idx32+noevict w{wp}"] = dict(base, one_d=True, idx64=False, evict=False,
                                                  warps=wp)
    if op == "ln":
        out["onepass"] = dict(base, onepass=True)
    if N == 1280:
        for wp in (1, 2, 4):
            out[f"tail256 1d w{wp}"] = dict(warps=wp, one_d=True, tail=256, idx64=False, evict=False)
        out["2rows w4"] = dict(warps=4, bm=2)
    return out


def run_rows(ops, shapes, dev, rows):
    gen = torch.Generator(device=dev).manual_seed(0)
    for op in ops:
        for M, N in shapes:
            t = {"x": torch.randn(M, N, device=dev, generator=gen).bfloat16(),
                 "w": (torch.randn(N, device=dev, generator=gen) + 1).bfloat16()}
            t["y"] = torch.empty_like(t["x"])
            if op == "ln":
                t["b"] = torch.randn(N, device=dev, generator=gen).bfloat16()
            if op == "gated":
                t["z"] = torch.randn(M, N, device=dev, generator=gen).bfloat16()
                t["rstd"] = torch.empty(M, device=dev)
            nbytes = (3 if op == "gated" else 2) * M * N * 2
            ref = reference(t, op)
            fns = {"prod": prod_fn(t, op)}
            fns.update({k: ab_fn(t, op, v) for k, v in variants(op, N).items()})
            name, peer = peer_fn(t, op)
            if peer is not None:
                fns[name] = peer
            for k, fn in fns.items():
                try:
                    us = graph_us(fn)
                    if us is None:
                        continue
                    t["y"].fill_(float("nan"))
                    r = fn()
                    out = r[0] if isinstance(r, tuple) else (t["y"] if r is None else r)
                    err = float((out.float() - ref).norm() / ref.norm())
                except Exception as exc:
                    print(f"{op} {M}x{N} {k}: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                    continue
                rows.append(dict(op=op, M=M, N=N, variant=k, us=us, gbps=nbytes / us / 1e3, err=err))
                print(f"{op:5s} {M:6d}x{N:<5d} {k:26s} {us:8.2f} us {nbytes / us / 1e3:6.0f} GB/s"
                      f" err {err:.1e}", flush=True)
            del t, fns, ref
            torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    p.add_argument("--only", default="rms,ln,gated")
    p.add_argument("--shard", default="0/1", help="i/n: run every n-th variant only")
    p.add_argument("--compile-only", action="store_true")
    a = p.parse_args()
    i, n = map(int, a.shard.split("/"))
    SHARD[:] = [i, n, a.compile_only]
    only = a.only.split(",")
    rows: list[dict] = []
    big = [(32768, 1280), (32768, 4096), (32768, 7168), (32768, 8192), (4096, 1280), (4096, 4096)]
    try:
        if "rms" in only:
            run_rows(["rms"], big, "cuda", rows)
        if "ln" in only:
            run_rows(["ln"], [(32768, 4096), (32768, 7168), (32768, 8192), (32768, 1280)], "cuda", rows)
        if "gated" in only:
            run_rows(["gated"], [(32768, 4096), (32768, 8192)], "cuda", rows)
    finally:
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows, f, indent=0)


if __name__ == "__main__":
    main()
