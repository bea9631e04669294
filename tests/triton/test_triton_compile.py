"""Every kernel variant compiles for sm_90 through Triton's full pipeline, no GPU needed.

The interpreter (test_triton_interpreter.py) checks the numerics but accepts code the compiler rejects
(e.g. a helper whose branches return different types); this catches that on CPU-only CI.
"""
import importlib.util
import itertools

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="triton not installed")

ROW_PARAMS = ("X", "R", "RO", "Z", "W", "B", "Y", "MEAN", "RSTD")
ROW_INTS = ("M", "n_groups", "G", "sx", "sr", "sro", "sz", "sy")


def _compile(fn, signature, constexprs, num_warps=8):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {**signature, **{k: "constexpr" for k in constexprs}}
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})


def _row_variants():
    """Each switch on and off at least once, in combinations the launcher produces."""
    for is_rms, res, z, gate_first, grouped in itertools.product([0, 1], repeat=5):
        if (gate_first and not z) or (res and (z or grouped or not is_rms)):
            continue
        yield dict(IS_RMS=bool(is_rms), HAS_RES=bool(res), HAS_Z=bool(z), GATE_FIRST=bool(gate_first),
                   HAS_W=True, HAS_B=not is_rms, ROUND_XHAT=bool(is_rms and not z), GROUPED=bool(grouped),
                   STORE_MEAN=not is_rms and z, STORE_RSTD=bool(z))


@pytest.mark.parametrize("looped,block_m,block_n", [(False, 1, 4096), (False, 16, 128), (True, 1, 4096)])
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_row_kernels_compile(looped, block_m, block_n, dtype):
    from normswitch.kernels.triton import rownorm

    fn = rownorm._rownorm_looped_kernel if looped else rownorm._rownorm_fused_kernel
    sig = {p: f"*{dtype}" for p in ROW_PARAMS}
    sig.update(MEAN="*fp32", RSTD="*fp32", W="*fp32", eps="fp32", w_offset="fp32")
    sig.update({i: "i32" for i in ROW_INTS})
    for variant, first in itertools.product(_row_variants(), [False, True]):
        # RTNE_BY_HAND (the interpreter's rounding) compiled too, with each PARAMS_FIRST value
        ce = {**variant, "BLOCK_M": block_m, "BLOCK_N": block_n, "PARAMS_FIRST": first, "RTNE_BY_HAND": first}
        assert _compile(fn, sig, ce).asm["cubin"]


@pytest.mark.parametrize("rtne", [False, True])
def test_channels_first_kernels_compile(rtne):
    from normswitch.kernels.triton import channels_first as cf

    one = cf.cf_config(256)
    split = cf.cf_config(4096)
    sig = {"X": "*bf16", "W": "*fp32", "B": "*bf16", "Y": "*bf16", "C": "i32", "S": "i32", "eps": "fp32"}
    assert _compile(cf._cf_one_pass_kernel, sig, {"BLOCK_C": one.block_c, "BLOCK_S": one.block_s,
                                                  "RTNE_BY_HAND": rtne}, one.num_warps).asm["cubin"]
    ints = {"K": "i32", "PLANE": "i64"}
    tiles = {"BLOCK_C": split.block_c, "BLOCK_S": split.block_s}
    stats = {"X": "*bf16", "P": "*fp32", "C": "i32", "S": "i32", **ints}
    assert _compile(cf._cf_stats_kernel, stats, tiles, split.num_warps).asm["cubin"]
    apply = {**sig, "P": "*fp32", **ints}
    apply = {k: apply[k] for k in ("X", "W", "B", "Y", "P", "C", "S", "K", "PLANE", "eps")}
    assert _compile(cf._cf_apply_kernel, apply, {**tiles, "RTNE_BY_HAND": rtne},
                    split.num_warps).asm["cubin"]
