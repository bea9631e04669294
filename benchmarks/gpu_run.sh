#!/bin/bash
# One device call: `bash benchmarks/gpu_run.sh check` (the GPU tests, config sweep, quick bench),
# `bench` (the full benchmark) or `all` (the GPU tests, then the full benchmark).
# Writes logs and results under $OUT.
set -o pipefail
mode=${1:-check}
. "$(dirname "$0")/device_env.sh"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,memory.total --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if [ "$mode" != bench ]; then
    timeout ${TEST_TIMEOUT:-330} python3 -m pytest -q -p no:cacheprovider -m gpu ${PYTEST_ARGS:-} tests 2>&1 \
        | tee "$OUT/gpu_tests.log" | tail -30
fi
if [ "$mode" = check ]; then
    timeout 120 python3 benchmarks/sweep_configs.py --json "$OUT/sweep.json" 2>&1 | tee "$OUT/sweep.log"
    timeout 90 python3 benchmarks/bench_norms.py --quick --no-progress --warmup 1 --rep 3 \
        --impls triton,native,torch,compile,liger,fla 2>&1 | tee "$OUT/quick_bench.log" | tail -40
else
    timeout ${BENCH_TIMEOUT:-540} python3 benchmarks/bench_norms.py --no-progress \
        --warmup ${WARMUP:-25} --rep ${REP:-10} --stream "$OUT/rows.jsonl" \
        --ops "${OPS:-rms_norm,fused_add_rms_norm,layer_norm,layer_norm_channels_first,norm_gated}" \
        --impls "${IMPLS:-triton,native,torch,compile,liger,fla}" --json "$OUT/bench.json" \
        --markdown "$OUT/bench.md" --plot "$OUT/bench.png" 2>&1 | tee "$OUT/bench.log" | tail -${TAIL:-60}
fi
