// Plain C++ interface between the torch bindings (bindings.cpp) and the CUDA kernels (*.cu).
// Kept free of torch headers so that the .cu files compile quickly and can be checked with
// nvcc alone.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace normswitch {

// Element types, as codes; every pointer below carries one of these.
enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

// A row-wise norm over "virtual rows": row m of x is split into ngroups = N / group contiguous
// groups of `group` elements; virtual row r = m * ngroups + g. Statistics are float32 and
// stored group-major (index g * M + m). Strides are in elements of the tensor's own type.
struct RowNormParams {
  const void* x = nullptr;       // (M, N), dtype
  int64_t x_stride = 0;
  const void* residual = nullptr;  // (M, N), res_dtype, or null
  int64_t res_stride = 0;
  void* res_out = nullptr;       // (M, N), res_dtype: x + residual rounded to res_dtype
  int64_t res_out_stride = 0;
  const void* z = nullptr;       // (M, N), dtype, or null: the gate
  int64_t z_stride = 0;
  const void* weight = nullptr;  // (N,), w_dtype, or null
  const void* bias = nullptr;    // (N,), b_dtype, or null
  void* out = nullptr;           // (M, N), dtype
  int64_t out_stride = 0;
  float* mean = nullptr;         // (ngroups * M,) or null
  float* rstd = nullptr;         // (ngroups * M,) or null
  int64_t M = 0;
  int64_t N = 0;
  int64_t group = 0;             // divides N
  float eps = 1e-6f;
  float offset = 0.f;            // added to the weight (Gemma: 1)
  int dtype = kBF16;
  int res_dtype = kBF16;
  int w_dtype = kF32;
  int b_dtype = kF32;
  bool rms = true;               // RMS statistics (no mean) instead of LayerNorm
  bool hf_round = false;         // y = round(round(xh) * (w + offset)); else one rounding
  bool gate_first = false;       // v = x * silu(z) before the statistics; else y *= silu(z)
};

// LayerNorm over dim 1 of a contiguous (B, C, S) tensor.
struct ChannelsFirstParams {
  const void* x = nullptr;
  const void* weight = nullptr;  // (C,), w_dtype
  const void* bias = nullptr;    // (C,), b_dtype
  void* out = nullptr;
  int64_t B = 0;
  int64_t C = 0;
  int64_t S = 0;
  float eps = 1e-6f;
  int dtype = kBF16;
  int w_dtype = kF32;
  int b_dtype = kF32;
};

// How a row norm is launched; chosen from the row length and alignment only (never from M),
// so each row's arithmetic is the same whatever the batch: batch invariance.
struct RowNormPlan {
  int vec;             // elements per memory access (16 bytes) or 1
  int vpt;             // chunks cached in registers per thread; 0: re-read from memory
  int threads_per_row;
  int rows_per_block;
};

RowNormPlan plan_row_norm(const RowNormParams& p);
cudaError_t launch_row_norm(const RowNormParams& p, cudaStream_t stream);
// Per dtype of x (row_norm_<dtype>.cu), with the plan already made.
cudaError_t launch_row_norm_f32(const RowNormParams& p, const RowNormPlan& plan, cudaStream_t stream);
cudaError_t launch_row_norm_f16(const RowNormParams& p, const RowNormPlan& plan, cudaStream_t stream);
cudaError_t launch_row_norm_bf16(const RowNormParams& p, const RowNormPlan& plan, cudaStream_t stream);
cudaError_t launch_channels_first(const ChannelsFirstParams& p, cudaStream_t stream);

}  // namespace normswitch
