// Row-wise norms: RMSNorm (optionally with a fused residual add), LayerNorm and the gated
// norms (groups of a row, optional SiLU gate). fp32 statistics, int64 addressing.
//
// Two kernels: `row_norm_cached` keeps the row's values in registers between the statistics
// and the output (one pass over memory; several rows per block when rows are short), and
// `row_norm_stream` re-reads long rows from memory (L2) instead.
#include "common.cuh"

namespace normswitch {
namespace {

// The values that enter the statistics for elements [col, col + n) of row m:
// x, or round(x + residual) (also stored to res_out), or x * silu(z) when the gate comes
// first. With from_res_out, the already stored x + residual is read back instead.
template <typename T, int VEC>
__device__ __forceinline__ void input_chunk(const RowNormParams& p, int64_t m, int64_t col,
                                            int n, bool from_res_out, float (&v)[VEC]) {
  if (from_res_out) {
    load_dyn<VEC>(p.res_out, p.res_dtype, m * p.res_out_stride + col, n, 0.f, v);
    return;
  }
  load_t<T, VEC>(static_cast<const T*>(p.x), m * p.x_stride + col, n, v);
  if (p.residual != nullptr) {
    float r[VEC];
    load_dyn<VEC>(p.residual, p.res_dtype, m * p.res_stride + col, n, 0.f, r);
#pragma unroll
    for (int j = 0; j < VEC; ++j) v[j] = round_dyn(v[j] + r[j], p.res_dtype);
    store_dyn<VEC>(p.res_out, p.res_dtype, m * p.res_out_stride + col, n, v);
  }
  if (p.z != nullptr && p.gate_first) {
    float zz[VEC];
    load_t<T, VEC>(static_cast<const T*>(p.z), m * p.z_stride + col, n, zz);
#pragma unroll
    for (int j = 0; j < VEC; ++j) v[j] *= silu(zz[j]);
  }
}

// Normalizes, applies weight/offset/bias and the gate, and stores elements [col, col + n).
template <typename T, int VEC>
__device__ __forceinline__ void output_chunk(const RowNormParams& p, int64_t m, int64_t col,
                                             int n, const float (&v)[VEC], float mean,
                                             float rstd) {
  float y[VEC];
  float w[VEC];
  if (p.weight != nullptr) load_dyn<VEC>(p.weight, p.w_dtype, col, n, 0.f, w);
  if (p.hf_round) {
    // HF order: normalize, round to x.dtype, then scale by (weight + offset) and round.
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float h = round_to<T>((v[j] - mean) * rstd);
      y[j] = p.weight != nullptr ? h * (w[j] + p.offset) : h;
    }
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      y[j] = (v[j] - mean) * rstd;
      if (p.weight != nullptr) y[j] *= w[j] + p.offset;
    }
    if (p.bias != nullptr) {
      float b[VEC];
      load_dyn<VEC>(p.bias, p.b_dtype, col, n, 0.f, b);
#pragma unroll
      for (int j = 0; j < VEC; ++j) y[j] += b[j];
    }
    if (p.z != nullptr && !p.gate_first) {
      float zz[VEC];
      load_t<T, VEC>(static_cast<const T*>(p.z), m * p.z_stride + col, n, zz);
#pragma unroll
      for (int j = 0; j < VEC; ++j) y[j] *= silu(zz[j]);
    }
  }
  store_t<T, VEC>(static_cast<T*>(p.out), m * p.out_stride + col, n, y);
}

__device__ __forceinline__ int chunk_len(int64_t e, int64_t len, int vec) {
  const int64_t left = len - e;
  return left <= 0 ? 0 : (left < vec ? int(left) : vec);
}

__device__ __forceinline__ void store_stats(const RowNormParams& p, int64_t m, int64_t g,
                                            float mean, float rstd) {
  if (p.mean != nullptr) p.mean[g * p.M + m] = mean;
  if (p.rstd != nullptr) p.rstd[g * p.M + m] = rstd;
}

template <typename T, int VEC, int VPT>
__global__ void __launch_bounds__(256) row_norm_cached(const RowNormParams p, int tpr) {
  __shared__ float smem[32];
  const int rpb = blockDim.x / tpr;
  const int lane = threadIdx.x % tpr;
  const int64_t ngroups = p.N / p.group;
  const int64_t r = int64_t(blockIdx.x) * rpb + threadIdx.x / tpr;
  const bool active = r < p.M * ngroups;
  const int64_t m = active ? r / ngroups : 0;
  const int64_t g = active ? r % ngroups : 0;
  const int64_t col0 = g * p.group;
  const int64_t len = active ? p.group : 0;

  float v[VPT][VEC];
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int64_t e = (int64_t(k) * tpr + lane) * VEC;
    const int n = chunk_len(e, len, VEC);
    if (n > 0) {
      input_chunk<T, VEC>(p, m, col0 + e, n, false, v[k]);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j) v[k][j] = 0.f;
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) s += p.rms ? v[k][j] * v[k][j] : v[k][j];
  }
  s = group_sum(s, tpr, smem);
  const float flen = float(p.group);
  float mean = 0.f;
  float rstd;
  if (p.rms) {
    rstd = rsqrtf(s / flen + p.eps);
  } else {
    mean = s / flen;
    float q = 0.f;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      const int n = chunk_len((int64_t(k) * tpr + lane) * VEC, len, VEC);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float d = j < n ? v[k][j] - mean : 0.f;
        q += d * d;
      }
    }
    q = group_sum(q, tpr, smem);
    rstd = rsqrtf(q / flen + p.eps);
  }
  if (!active) return;
  if (lane == 0) store_stats(p, m, g, mean, rstd);
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int64_t e = (int64_t(k) * tpr + lane) * VEC;
    const int n = chunk_len(e, len, VEC);
    if (n > 0) output_chunk<T, VEC>(p, m, col0 + e, n, v[k], mean, rstd);
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(1024) row_norm_stream(const RowNormParams p) {
  __shared__ float smem[32];
  const int tpr = blockDim.x;
  const int64_t ngroups = p.N / p.group;
  const int64_t r = blockIdx.x;
  const int64_t m = r / ngroups;
  const int64_t g = r % ngroups;
  const int64_t col0 = g * p.group;
  const int64_t len = p.group;
  const bool reread = p.residual != nullptr;
  float v[VEC];

  float s = 0.f;
  for (int64_t e = int64_t(threadIdx.x) * VEC; e < len; e += int64_t(tpr) * VEC) {
    const int n = chunk_len(e, len, VEC);
    input_chunk<T, VEC>(p, m, col0 + e, n, false, v);
#pragma unroll
    for (int j = 0; j < VEC; ++j) s += p.rms ? v[j] * v[j] : v[j];
  }
  s = group_sum(s, tpr, smem);
  const float flen = float(len);
  float mean = 0.f;
  float rstd;
  if (p.rms) {
    rstd = rsqrtf(s / flen + p.eps);
  } else {
    mean = s / flen;
    float q = 0.f;
    for (int64_t e = int64_t(threadIdx.x) * VEC; e < len; e += int64_t(tpr) * VEC) {
      const int n = chunk_len(e, len, VEC);
      input_chunk<T, VEC>(p, m, col0 + e, n, reread, v);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float d = j < n ? v[j] - mean : 0.f;
        q += d * d;
      }
    }
    q = group_sum(q, tpr, smem);
    rstd = rsqrtf(q / flen + p.eps);
  }
  if (threadIdx.x == 0) store_stats(p, m, g, mean, rstd);
  for (int64_t e = int64_t(threadIdx.x) * VEC; e < len; e += int64_t(tpr) * VEC) {
    const int n = chunk_len(e, len, VEC);
    input_chunk<T, VEC>(p, m, col0 + e, n, reread, v);
    output_chunk<T, VEC>(p, m, col0 + e, n, v, mean, rstd);
  }
}

int elem_size(int dt) { return dt == kF32 ? 4 : 2; }

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// The 16-byte path needs every base 16-byte aligned and every row and group start on a
// multiple of VEC elements (so each chunk of every tensor is aligned to its own pack).
bool can_vectorize(const RowNormParams& p, int vec) {
  const bool grouped = p.group != p.N;
  if (grouped && p.group % vec != 0) return false;
  const void* ptrs[] = {p.x, p.residual, p.res_out, p.z, p.weight, p.bias, p.out};
  for (const void* q : ptrs) {
    if (q != nullptr && !aligned16(q)) return false;
  }
  if (p.M > 1) {
    if (p.x_stride % vec != 0 || p.out_stride % vec != 0) return false;
    if (p.residual != nullptr && (p.res_stride % vec != 0 || p.res_out_stride % vec != 0))
      return false;
    if (p.z != nullptr && p.z_stride % vec != 0) return false;
  }
  return true;
}

template <typename T, int VEC, int VPT>
cudaError_t launch_cached_vpt(const RowNormParams& p, const RowNormPlan& pl, cudaStream_t st) {
  const int64_t rows = p.M * (p.N / p.group);
  const int64_t blocks = (rows + pl.rows_per_block - 1) / pl.rows_per_block;
  row_norm_cached<T, VEC, VPT><<<dim3(unsigned(blocks)), pl.threads_per_row * pl.rows_per_block,
                                   0, st>>>(p, pl.threads_per_row);
  return cudaGetLastError();
}

template <typename T, int VEC>
cudaError_t launch_vec(const RowNormParams& p, const RowNormPlan& pl, cudaStream_t st) {
  switch (pl.vpt) {
    case 0: {
      const int64_t rows = p.M * (p.N / p.group);
      row_norm_stream<T, VEC><<<dim3(unsigned(rows)), pl.threads_per_row, 0, st>>>(p);
      return cudaGetLastError();
    }
    case 1: return launch_cached_vpt<T, VEC, 1>(p, pl, st);
    case 2: return launch_cached_vpt<T, VEC, 2>(p, pl, st);
    case 4: return launch_cached_vpt<T, VEC, 4>(p, pl, st);
    case 8: return launch_cached_vpt<T, VEC, 8>(p, pl, st);
    default: break;
  }
  if constexpr (VEC <= 4) {
    if (pl.vpt == 16) return launch_cached_vpt<T, VEC, 16>(p, pl, st);
  }
  if constexpr (VEC == 1) {
    if (pl.vpt == 32) return launch_cached_vpt<T, VEC, 32>(p, pl, st);
  }
  return cudaErrorInvalidConfiguration;
}

template <typename T>
cudaError_t launch_typed(const RowNormParams& p, const RowNormPlan& pl, cudaStream_t st) {
  constexpr int kVec = 16 / int(sizeof(T));
  return pl.vec == 1 ? launch_vec<T, 1>(p, pl, st) : launch_vec<T, kVec>(p, pl, st);
}

}  // namespace

RowNormPlan plan_row_norm(const RowNormParams& p) {
  constexpr int kMaxCached = 64;  // floats per thread held in registers
  constexpr int kCachedThreads = 256;
  RowNormPlan pl{};
  const int full = 16 / elem_size(p.dtype);
  pl.vec = can_vectorize(p, full) ? full : 1;
  const int64_t chunks = (p.group + pl.vec - 1) / pl.vec;
  pl.vpt = 0;
  for (int vpt = 1; vpt <= 32 && vpt * pl.vec <= kMaxCached; vpt *= 2) {
    if ((chunks + vpt - 1) / vpt <= kCachedThreads) {
      pl.vpt = vpt;
      break;
    }
  }
  if (pl.vpt == 0) {
    pl.threads_per_row = 1024;
    pl.rows_per_block = 1;
    return pl;
  }
  const int t = int((chunks + pl.vpt - 1) / pl.vpt);
  if (t <= 32) {
    int pow2 = 1;
    while (pow2 < t) pow2 *= 2;
    pl.threads_per_row = pow2;
  } else {
    pl.threads_per_row = (t + 31) / 32 * 32;
  }
  pl.rows_per_block = kCachedThreads / pl.threads_per_row;
  if (pl.rows_per_block < 1) pl.rows_per_block = 1;
  return pl;
}

cudaError_t launch_row_norm(const RowNormParams& p, cudaStream_t stream) {
  if (p.M == 0 || p.N == 0) return cudaSuccess;
  if (p.group <= 0 || p.N % p.group != 0) return cudaErrorInvalidValue;
  const RowNormPlan pl = plan_row_norm(p);
  switch (p.dtype) {
    case kF32: return launch_typed<float>(p, pl, stream);
    case kF16: return launch_typed<__half>(p, pl, stream);
    case kBF16: return launch_typed<__nv_bfloat16>(p, pl, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace normswitch
