// The interface of the AVX-512 row kernels (rms_norm_avx512.cpp): plain pointers and a dtype
// tag, no ATen types, because that file is compiled for AVX-512 (+BF16) by a target pragma and
// must share no inline code with the portable files, which are compiled for the build's baseline.
#pragma once

#include <cstdint>

namespace normswitch_cpu::avx512 {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2 };

// Which row kernels serve: "auto" picks AVX-512 where the CPU has it, "portable" forces the
// ATen-vectorized kernels (tests run both); set process-wide from Python.
void set_path(bool portable);

// True when this CPU runs the AVX-512 kernels and they are not switched off: AVX-512 F/BW/VL/DQ
// for all dtypes, plus AVX512_BF16 for bfloat16 x.
bool usable(DType x);

// "avx512-bf16", "avx512" or "portable": what a call would use (for benchmarks and `info`).
const char* path_name();

// out[0, n) = float32(w) + offset for a weight of dtype wt (vectorized: the kernels read this).
void weight_f32(DType wt, const void* w, float offset, float* out, int64_t n);

// RMSNorm of rows [begin, end): y = round(round(x * rstd) * w), rstd from the fp32 sum of squares,
// w the float32 weight (offset included) or null (y = round(x * rstd)). Strides are in elements.
// `stream`: write y with non-temporal stores (an output larger than the caches).
void rms_rows(DType t, const void* x, int64_t xs, void* y, int64_t ys, const float* w, float eps, int64_t n,
              int64_t begin, int64_t end, bool stream);

// Fused add: r = round(x + res) stored into r (which may be res), then y = rms_norm(r) as above
// (y may be x).
void add_rms_rows(DType t, const void* x, int64_t xs, const void* res, int64_t rs, void* r, int64_t os, void* y,
                  int64_t ys, const float* w, float eps, int64_t n, int64_t begin, int64_t end);

}  // namespace normswitch_cpu::avx512
