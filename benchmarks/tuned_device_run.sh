#!/bin/bash
# One device call for the tuned selection: build the cuda kernels (timed), tune on the grid of
# normswitch bench, bench the backends and the selection with the tuning file, bench the selection
# without it, and compare (normswitch.tune.compare). Short do_bench times (WARMUP/REP, ms) keep the
# whole grid within one call. Writes everything under $OUT; partial rows survive a timeout.
set -o pipefail
. "$(dirname "$0")/device_env.sh"
export NORMSWITCH_CUDA_CACHE=${NORMSWITCH_CUDA_CACHE:-/tmp/ns-cuda-cache}
W=${WARMUP:-5} R=${REP:-5}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
python3 - <<'PY' 2>&1 | tee "$OUT/build.log"
import time
from normswitch.kernels.cuda import build
t = time.perf_counter(); build.load(); print(f"cuda kernels ready in {time.perf_counter() - t:.1f} s")
PY
SECONDS=0
timeout ${TUNE_TIMEOUT:-120} python3 -m normswitch.cli tune --no-progress --warmup $W --rep $R \
    --time-limit ${TUNE_LIMIT:-100} --out "$OUT/tuned.yaml" ${TUNE_ARGS:-} > "$OUT/tune.log" 2>&1
echo "tune rc $? in ${SECONDS} s"; tail -3 "$OUT/tune.log"
SECONDS=0
NORMSWITCH_TUNED="$OUT/tuned.yaml" timeout ${BENCH_TIMEOUT:-120} python3 -m normswitch.cli bench --no-progress \
    --warmup $W --rep $R --impls triton,cuda,native,normswitch --stream "$OUT/rows-tuned.jsonl" \
    --json "$OUT/bench-tuned.json" --markdown "$OUT/bench-tuned.md" ${BENCH_ARGS:-} > "$OUT/bench-tuned.log" 2>&1
echo "bench with the file rc $? in ${SECONDS} s"
SECONDS=0
timeout ${UNTUNED_TIMEOUT:-60} python3 -m normswitch.cli bench --no-progress --warmup $W --rep $R \
    --impls normswitch --stream "$OUT/rows-untuned.jsonl" ${BENCH_ARGS:-} > "$OUT/bench-untuned.log" 2>&1
echo "bench without the file rc $? in ${SECONDS} s"
python3 -m normswitch.tune.compare "$OUT/rows-tuned.jsonl" --markdown "$OUT/compare-tuned.md" \
    --title "H200: normswitch with the tuning file against its fastest backend"
python3 -m normswitch.tune.compare "$OUT/rows-tuned.jsonl" --selection "$OUT/rows-untuned.jsonl" \
    --markdown "$OUT/compare-untuned.md" --title "H200: normswitch without a tuning file against its fastest backend"
