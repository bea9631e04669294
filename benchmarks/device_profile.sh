#!/bin/bash
# One device call for profiling: Nsight Compute counters of representative kernels
# (benchmarks/ncu_targets.py), the A/B experiments (benchmarks/ab_rownorm.py), decode latency
# (benchmarks/decode_latency.py), then the GPU test suites with the time left.
# Writes at most 7 files under $OUT. Usage: bash benchmarks/device_profile.sh [total seconds]
set -o pipefail
BUDGET=${1:-570}
. "$(dirname "$0")/device_env.sh"
export NORMSWITCH_CUDA_CACHE=${NORMSWITCH_CUDA_CACHE:-/tmp/ns-cuda-cache}
LOG=$OUT/run.log
left() { echo $((BUDGET - SECONDS)); }
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$LOG"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU" | tee -a "$LOG"
"$NCU" --version 2>&1 | tail -1 | tee -a "$LOG"

# CPU-bound work in parallel: build the CUDA extension, compile the A/B variants (8 shards).
timeout 150 python3 -c "from normswitch.kernels.cuda import build; build.load()" \
    >>"$LOG" 2>&1 &
for i in 0 1 2 3 4 5 6 7; do
    timeout 150 python3 benchmarks/ab_rownorm.py --shard $i/8 --compile-only >/dev/null 2>&1 &
done
cat > /tmp/tiny.cu <<'EOF'
#include <cstdio>
__global__ void k(float* x) { x[threadIdx.x] += 1.f; }
int main() { float* x; cudaMalloc(&x, 1024); k<<<1, 256>>>(x); cudaDeviceSynchronize(); puts("ok"); }
EOF
nvcc -arch=sm_90 -o /tmp/tiny /tmp/tiny.cu >>"$LOG" 2>&1 && \
    timeout 60 "$NCU" --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    /tmp/tiny 2>&1 | tail -6 | tee -a "$LOG"
wait
echo "== compiled, $(left) s left" | tee -a "$LOG"

SECTIONS="--section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables
 --section Occupancy --section WarpStateStats --section LaunchStats --section SchedulerStats"
timeout 200 "$NCU" --clock-control none --profile-from-start off --nvtx $SECTIONS \
    --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_op_read.sum \
    -f -o "$OUT/prof" python3 benchmarks/ncu_targets.py >>"$LOG" 2>&1
echo "== ncu rc $?, $(left) s left" | tee -a "$LOG"
if [ -f "$OUT/prof.ncu-rep" ]; then
    "$NCU" -i "$OUT/prof.ncu-rep" --page raw --csv > "$OUT/ncu_raw.csv" 2>>"$LOG"
    "$NCU" -i "$OUT/prof.ncu-rep" --page details --print-details all > "$OUT/ncu_details.txt" 2>>"$LOG" \
        || "$NCU" -i "$OUT/prof.ncu-rep" --page details > "$OUT/ncu_details.txt" 2>>"$LOG"
fi

timeout $(( $(left) > 300 ? 170 : $(left) / 2 )) python3 benchmarks/ab_rownorm.py 2>&1 | tee "$OUT/ab.log" | tail -5
echo "== ab done, $(left) s left" | tee -a "$LOG"
timeout 60 python3 benchmarks/decode_latency.py 2>&1 | tee "$OUT/decode.log" | tail -5
echo "== decode done, $(left) s left" | tee -a "$LOG"

timeout $(( $(left) - 10 )) python3 -m pytest -q -p no:cacheprovider -m gpu -n 4 \
    tests/triton tests/cuda tests/gpu_e2e 2>&1 | tee "$OUT/tests.log" | tail -25
echo "== tests rc $?, $(left) s left" | tee -a "$LOG"
