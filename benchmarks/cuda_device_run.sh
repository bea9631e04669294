#!/usr/bin/env bash
# One device run for the cuda backend: build the own kernels (timed), run the GPU tests, then
# the benchmark (cuda vs triton vs torch) through normswitch.bench. Writes logs under $OUT.
# Usage on the GPU machine, from the repository root: bash benchmarks/cuda_device_run.sh [pytest args]
set -u
OUT=${OUT:-/tmp/ns-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NORMSWITCH_CUDA_CACHE=${NORMSWITCH_CUDA_CACHE:-/tmp/ns-cuda-cache}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
python3 - <<'PY' 2>&1 | tee "$OUT/build.log"
import logging, time, torch
logging.basicConfig(level=logging.INFO)
from normswitch.kernels.cuda import build
t = time.perf_counter(); build.load(); print(f"first load {time.perf_counter() - t:.1f} s")
build.reset(); t = time.perf_counter(); build.load(); print(f"cached load {time.perf_counter() - t:.2f} s")
PY
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout 300 python3 -m pytest -q -p no:cacheprovider tests/cuda "$@" 2>&1 | tail -n 60 | tee "$OUT/pytest.log"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  timeout ${BENCH_TIMEOUT:-330} python3 -c "import sys; from normswitch.bench import main; sys.exit(main(sys.argv[1:]))" --impls cuda,triton,torch --no-progress \
    --json "$OUT/bench.json" --markdown "$OUT/bench.md" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
  tail -n 40 "$OUT/bench.log"
fi
