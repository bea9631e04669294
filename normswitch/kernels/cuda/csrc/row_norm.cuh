// Row-wise norm kernels: RMSNorm (optionally after a fused residual add), LayerNorm and the
// gated norms (groups of a row, optional SiLU gate). fp32 statistics, int64 row addressing.
//
// `row_norm_cached` keeps a thread's share of the row in registers between the statistics and
// the output (one pass over memory; several rows per block when rows are short);
// `row_norm_stream` re-reads long rows from memory (L2). A thread issues every load of its
// share (x, and the residual or gate) before any arithmetic, so several 16-byte accesses per
// thread are in flight, and keeps 16-bit data as the loaded words (converted to fp32 at each
// use) to save registers; the weight and bias (when of x's dtype) are staged once per block
// in shared memory by asynchronous copies that overlap the row's loads. The op's features are
// compile-time kinds. Included by one .cu per dtype of x.
#pragma once

#include "row_op.cuh"

namespace normswitch {
namespace rows {

constexpr int kMaxThreads = 512;   // streaming kernel
constexpr int kCachedThreads = 256;  // cached kernel: at least 3 blocks per SM (<= 85 registers)

// Stages `bytes` (a multiple of 16) of src into shared memory dst, asynchronously.
__device__ __forceinline__ void stage_async(unsigned char* dst, const void* src, int64_t bytes) {
  for (int64_t i = int64_t(threadIdx.x) * 16; i < bytes; i += int64_t(blockDim.x) * 16) {
    cp_async16(dst + i, static_cast<const unsigned char*>(src) + i);
  }
}

// staged: bit 0 the weight, bit 1 the bias (each N elements of T) are staged in shared memory.
template <typename T, int VEC, int VPT, int KIND>
__global__ void __launch_bounds__(kCachedThreads, 3) row_norm_cached(const RowNormParams p, int tpr,
                                                                     int staged) {
  __shared__ float smem[32];
  extern __shared__ __align__(16) unsigned char stage[];
  const int rpb = blockDim.x / tpr;
  const int lane = threadIdx.x % tpr;
  const int64_t ngroups = p.N / p.group;
  const int64_t r = int64_t(blockIdx.x) * rpb + threadIdx.x / tpr;
  const bool active = r < p.M * ngroups;
  const int64_t m = !active ? 0 : (ngroups == 1 ? r : r / ngroups);
  const int64_t g = !active || ngroups == 1 ? 0 : r % ngroups;
  const int64_t col0 = g * p.group;
  const Share<VPT> sh = make_share<VEC, VPT>(lane, tpr, active ? int(p.group) : 0);

  RowOp<T, VEC, VPT, KIND> op;
  const int64_t nbytes = p.N * int64_t(sizeof(T));
  if (staged & 1) {
    stage_async(stage, p.weight, nbytes);
    op.w_s = reinterpret_cast<const T*>(stage);
  }
  if (staged & 2) {
    unsigned char* dst = stage + ((staged & 1) ? nbytes : 0);
    stage_async(dst, p.bias, nbytes);
    op.b_s = reinterpret_cast<const T*>(dst);
  }
  if (staged) cp_async_commit();
  op.load(p, m, col0, sh, false);
  const bool rms = rms_stats(KIND, p);
  const float s = group_sum(op.sum(sh, rms), tpr, smem);
  const float flen = float(p.group);
  float mean = 0.f;
  float rstd;
  if (rms) {
    rstd = rsqrtf(s / flen + p.eps);
  } else {
    mean = s / flen;
    rstd = rsqrtf(group_sum(op.var(sh, mean), tpr, smem) / flen + p.eps);
  }
  if (staged) {
    cp_async_wait_all();
    __syncthreads();
  }
  if (!active) return;
  if (lane == 0) store_stats(p, m, g, mean, rstd);
  op.store(p, m, col0, sh, mean, rstd);
}

constexpr int kRound = 4;  // chunks per thread per round of the streaming kernel

template <typename T, int VEC, int KIND>
__global__ void __launch_bounds__(kMaxThreads) row_norm_stream(const RowNormParams p) {
  __shared__ float smem[32];
  const int tpr = blockDim.x;
  const int64_t ngroups = p.N / p.group;
  const int64_t m = blockIdx.x / ngroups;
  const int64_t g = blockIdx.x % ngroups;
  const int64_t col0 = g * p.group;
  const int len = int(p.group);
  const int per_round = kRound * tpr * VEC;
  const bool reread = KIND == kResidual || KIND == kResidualMixed;
  RowOp<T, VEC, kRound, KIND> op;

  const bool rms = rms_stats(KIND, p);
  float s = 0.f;
  for (int base = 0; base < len; base += per_round) {
    const Share<kRound> sh = make_share<VEC, kRound>(base / VEC + threadIdx.x, tpr, len);
    op.load(p, m, col0, sh, false);
    s += op.sum(sh, rms);
  }
  s = group_sum(s, tpr, smem);
  const float flen = float(len);
  float mean = 0.f;
  float rstd;
  if (rms) {
    rstd = rsqrtf(s / flen + p.eps);
  } else {
    mean = s / flen;
    float q = 0.f;
    for (int base = 0; base < len; base += per_round) {
      const Share<kRound> sh = make_share<VEC, kRound>(base / VEC + threadIdx.x, tpr, len);
      op.load(p, m, col0, sh, reread);
      q += op.var(sh, mean);
    }
    rstd = rsqrtf(group_sum(q, tpr, smem) / flen + p.eps);
  }
  if (threadIdx.x == 0) store_stats(p, m, g, mean, rstd);
  for (int base = 0; base < len; base += per_round) {
    const Share<kRound> sh = make_share<VEC, kRound>(base / VEC + threadIdx.x, tpr, len);
    op.load(p, m, col0, sh, reread);
    op.store(p, m, col0, sh, mean, rstd);
  }
}

template <typename T, int VEC, int VPT, int KIND>
cudaError_t launch_cached(const RowNormParams& p, const RowNormPlan& pl, cudaStream_t st) {
  const int64_t rows = p.M * (p.N / p.group);
  const int64_t blocks = (rows + pl.rows_per_block - 1) / pl.rows_per_block;
  // Stage the weight and bias when they have x's dtype and fit (16-byte copies need VEC > 1).
  constexpr int64_t kMaxStage = 48 * 1024;
  const int64_t nbytes = p.N * int64_t(sizeof(T));
  int staged = 0;
  int64_t bytes = 0;
  if (VEC > 1 && p.weight != nullptr && p.w_dtype == DTypeOf<T>::value) {
    staged |= 1;
    bytes += nbytes;
  }
  if (VEC > 1 && has_bias(KIND) && p.bias != nullptr && p.b_dtype == DTypeOf<T>::value) {
    staged |= 2;
    bytes += nbytes;
  }
  if (bytes > kMaxStage) {
    staged = 0;
    bytes = 0;
  }
  row_norm_cached<T, VEC, VPT, KIND>
      <<<dim3(unsigned(blocks)), pl.threads_per_row * pl.rows_per_block, size_t(bytes), st>>>(
          p, pl.threads_per_row, staged);
  return cudaGetLastError();
}

template <typename T, int VEC, int KIND>
cudaError_t launch_vec(const RowNormParams& p, const RowNormPlan& pl, cudaStream_t st) {
  // 32 registers of loaded data per thread at most (raw 16-byte chunks are 4 words); see
  // max_chunks_per_thread in row_norm.cu, which must agree.
  constexpr int kWords = (VEC > 1 && raw_kind(KIND)) ? 4 : VEC;
  // x and the residual or gate; a 16-bit gate applied first is only a transient of half the
  // size of x's fp32 cache.
  constexpr int kStreams = KIND >= kResidual && !(KIND == kGatedFirst && sizeof(T) == 2) ? 2 : 1;
  constexpr int kMaxVpt = 32 / (kWords * kStreams);
  switch (pl.vpt) {
    case 0: {
      const int64_t rows = p.M * (p.N / p.group);
      row_norm_stream<T, VEC, KIND><<<dim3(unsigned(rows)), pl.threads_per_row, 0, st>>>(p);
      return cudaGetLastError();
    }
    case 1: return launch_cached<T, VEC, 1, KIND>(p, pl, st);
    case 2: return launch_cached<T, VEC, 2, KIND>(p, pl, st);
    case 4: return launch_cached<T, VEC, 4, KIND>(p, pl, st);
    default: break;
  }
  if constexpr (kMaxVpt >= 8) {
    if (pl.vpt == 8) return launch_cached<T, VEC, 8, KIND>(p, pl, st);
  }
  if constexpr (kMaxVpt >= 16) {
    if (pl.vpt == 16) return launch_cached<T, VEC, 16, KIND>(p, pl, st);
  }
  return cudaErrorInvalidConfiguration;
}

template <typename T, int KIND>
cudaError_t launch_kind(const RowNormParams& p, const RowNormPlan& pl, cudaStream_t st) {
  constexpr int kVec = 16 / int(sizeof(T));
  return pl.vec == 1 ? launch_vec<T, 1, KIND>(p, pl, st) : launch_vec<T, kVec, KIND>(p, pl, st);
}

template <typename T>
cudaError_t launch_typed(const RowNormParams& p, const RowNormPlan& pl, cudaStream_t st) {
  if (p.residual != nullptr) {
    return p.res_dtype == DTypeOf<T>::value ? launch_kind<T, kResidual>(p, pl, st)
                                          : launch_kind<T, kResidualMixed>(p, pl, st);
  }
  if (p.z != nullptr) {
    return p.gate_first ? launch_kind<T, kGatedFirst>(p, pl, st)
                        : launch_kind<T, kGated>(p, pl, st);
  }
  return p.rms && p.bias == nullptr ? launch_kind<T, kRms>(p, pl, st)
                                    : launch_kind<T, kLayer>(p, pl, st);
}

}  // namespace rows
}  // namespace normswitch
