// Launch planning and dtype dispatch of the row-norm kernels (row_norm.cuh).
#include "launch.h"

namespace normswitch {
namespace {

int elem_size(int dt) { return dt == kF32 ? 4 : 2; }

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// The 16-byte path needs every base 16-byte aligned, and every row and group to start on and
// to span a multiple of VEC elements (each chunk of every tensor is then aligned to its pack).
bool can_vectorize(const RowNormParams& p, int vec) {
  if (p.group % vec != 0) return false;
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

// Chunks a thread may hold: 32 registers of loaded data (x, and the residual or gate), where a
// 16-byte chunk of 16-bit data kept raw is 4 words, else one fp32 per element (a residual of
// another dtype, a gate applied first, the scalar path); at most 16. Must agree with
// launch_vec in row_norm.cuh.
int max_chunks_per_thread(const RowNormParams& p, int vec) {
  const bool fp32_cache = (p.residual != nullptr && p.res_dtype != p.dtype) ||
                          (p.z != nullptr && p.gate_first);
  const int words = (vec > 1 && !fp32_cache) ? 4 : vec;
  const bool half_gate_first = p.z != nullptr && p.gate_first && p.dtype != kF32;
  const int streams = (p.residual != nullptr || (p.z != nullptr && !half_gate_first)) ? 2 : 1;
  const int vpt = 32 / (words * streams);
  return vpt > 16 ? 16 : vpt;
}

// Threads for t chunks-per-thread slots: a power of two up to a warp, else whole warps.
int64_t row_threads(int64_t t) {
  if (t > 32) return (t + 31) / 32 * 32;
  int64_t pow2 = 1;
  while (pow2 < t) pow2 *= 2;
  return pow2;
}

}  // namespace

RowNormPlan plan_row_norm(const RowNormParams& p) {
  constexpr int kRowThreads = 256;     // threads per block of the cached kernel
  constexpr int kMaxRowThreads = 256;  // longer rows are streamed
  constexpr int kStreamThreads = 512;
  RowNormPlan pl{};
  const int full = 16 / elem_size(p.dtype);
  pl.vec = can_vectorize(p, full) ? full : 1;
  const int64_t chunks = (p.group + pl.vec - 1) / pl.vec;
  const int max_vpt = max_chunks_per_thread(p, pl.vec);
  // The most chunks per thread (bytes in flight per thread) that leaves at most 40% of a
  // row's thread slots idle, else the most that fits; longer rows are streamed.
  pl.vpt = 0;
  for (int pass = 0; pass < 2 && pl.vpt == 0; ++pass) {
    for (int vpt = max_vpt; vpt >= 1 && pl.vpt == 0; vpt /= 2) {
      const int64_t t = (chunks + vpt - 1) / vpt;
      if (t > kMaxRowThreads) break;
      const int64_t slots = row_threads(t) * vpt;
      if (pass == 1 || 5 * (slots - chunks) <= 2 * slots) pl.vpt = vpt;
    }
  }
  if (pl.vpt == 0) {
    pl.threads_per_row = kStreamThreads;
    pl.rows_per_block = 1;
    return pl;
  }
  pl.threads_per_row = int(row_threads((chunks + pl.vpt - 1) / pl.vpt));
  pl.rows_per_block = pl.threads_per_row >= kRowThreads ? 1 : kRowThreads / pl.threads_per_row;
  return pl;
}

cudaError_t launch_row_norm(const RowNormParams& p, cudaStream_t stream) {
  if (p.M == 0 || p.N == 0) return cudaSuccess;
  if (p.group <= 0 || p.N % p.group != 0 || p.group >= (int64_t(1) << 31))
    return cudaErrorInvalidValue;
  const RowNormPlan pl = plan_row_norm(p);
  switch (p.dtype) {
    case kF32: return launch_row_norm_f32(p, pl, stream);
    case kF16: return launch_row_norm_f16(p, pl, stream);
    case kBF16: return launch_row_norm_bf16(p, pl, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace normswitch
