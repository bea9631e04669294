#!/bin/bash
# One device call for the tuned selection: build the cuda kernels (timed), tune on the grid of
# normswitch bench, bench the backends and the selection with the tuning file, bench the selection
# without it, and compare (normswitch.tune.compare). TOTAL seconds are shared out after the build;
# short do_bench times (WARMUP/REP, ms) keep the grid within them; last, the host time per eager
# call with and without the file (benchmarks/tuned_host_ab.py). Writes everything under $OUT;
# rows streamed as they are measured survive a timeout.
set -o pipefail
. "$(dirname "$0")/device_env.sh"
export NORMSWITCH_CUDA_CACHE=${NORMSWITCH_CUDA_CACHE:-/tmp/ns-cuda-cache}
W=${WARMUP:-3} R=${REP:-4} TOTAL=${TOTAL:-210} IMPLS=${IMPLS:-triton,cuda,native}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
if [ "${SKIP_BUILD:-0}" != 1 ]; then  # SKIP_BUILD=1 with IMPLS=triton,native: no nvcc time
python3 - <<'PY' 2>&1 | tee "$OUT/build.log"
import time
from normswitch.kernels.cuda import build
t = time.perf_counter(); build.load(); print(f"cuda kernels ready in {time.perf_counter() - t:.1f} s")
PY
fi
left=$((TOTAL - SECONDS)); t_tune=$((left * 40 / 100)); t_bench=$((left * 43 / 100)); t_plain=$((left * 12 / 100))
echo "after the build: ${left} s left: tune ${t_tune} s, bench ${t_bench} s, bench without the file ${t_plain} s"
start=$SECONDS
timeout $((t_tune + 15)) python3 -m normswitch.cli tune --no-progress --warmup $W --rep $R --backends $IMPLS \
    --time-limit $t_tune --out "$OUT/tuned.yaml" ${TUNE_ARGS:-} > "$OUT/tune.log" 2>&1
echo "tune rc $? in $((SECONDS - start)) s"; grep -E "wrote|time limit|excluded" "$OUT/tune.log" | head -20
start=$SECONDS
NORMSWITCH_TUNED="$OUT/tuned.yaml" timeout $t_bench python3 -m normswitch.cli bench --no-progress \
    --warmup $W --rep $R --impls $IMPLS,normswitch --stream "$OUT/rows-tuned.jsonl" \
    --json "$OUT/bench-tuned.json" ${BENCH_ARGS:-} > "$OUT/bench-tuned.log" 2>&1
echo "bench with the file rc $? in $((SECONDS - start)) s"
start=$SECONDS
timeout $t_plain python3 -m normswitch.cli bench --no-progress --warmup $W --rep $R --impls normswitch \
    --stream "$OUT/rows-untuned.jsonl" --json "$OUT/bench-untuned.json" ${BENCH_ARGS:-} > "$OUT/bench-untuned.log" 2>&1
echo "bench without the file rc $? in $((SECONDS - start)) s"
python3 -m normswitch.tune.compare "$OUT/rows-tuned.jsonl" --markdown "$OUT/compare-tuned.md" \
    --title "H200: normswitch with the tuning file against its fastest backend"
python3 -m normswitch.tune.compare "$OUT/rows-tuned.jsonl" --selection "$OUT/rows-untuned.jsonl" \
    --markdown "$OUT/compare-untuned.md" --title "H200: normswitch without a tuning file against its fastest backend"
# Host time per eager call with and without the file, interleaved in one process (issue 16 item 2).
timeout 120 python3 -m benchmarks.tuned_host_ab "$OUT/tuned.yaml" --device cuda --json "$OUT/host-ab.json" \
    2>&1 | tee "$OUT/host-ab.txt" | tail -5
