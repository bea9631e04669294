// LayerNorm over dim 1 of a contiguous (B, C, S) tensor (SAM's LayerNorm2d on NCHW).
// Few positions per image (S <= 64, the decode-like shapes) take channels_first_small.
// A block of 256 threads is LS lanes along s (VEC consecutive positions each: 16-byte accesses
// when S is a multiple of VEC) times CS = 256 / LS thread rows that split C (loops unrolled so
// that several loads are in flight). Two passes over
// the block's slab: sums of (x - k) and (x - k)^2, shifted by the position's first channel k
// for accuracy, then the output; the sums meet in shared memory.
#include "common.cuh"

namespace normswitch {
namespace {

constexpr int kThreads = 256;

template <int VEC>
__device__ __forceinline__ void split_sum(float (&a)[VEC], float (&b)[VEC], float* red, int ls,
                                          int cs) {
  const int lane = threadIdx.x % ls;
  const int row = threadIdx.x / ls;
  float* ra = red;
  float* rb = red + kThreads * VEC;
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    ra[(row * ls + lane) * VEC + j] = a[j];
    rb[(row * ls + lane) * VEC + j] = b[j];
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    float sa = 0.f;
    float sb = 0.f;
    for (int i = 0; i < cs; ++i) {
      sa += ra[(i * ls + lane) * VEC + j];
      sb += rb[(i * ls + lane) * VEC + j];
    }
    a[j] = sa;
    b[j] = sb;
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads) channels_first_kernel(const ChannelsFirstParams p,
                                                                  int ls, int64_t tiles_per_b) {
  __shared__ float red[2 * kThreads * VEC];
  const int cs = kThreads / ls;
  const int lane = threadIdx.x % ls;
  const int crow = threadIdx.x / ls;
  const int64_t b = blockIdx.x / tiles_per_b;
  const int64_t s0 = ((blockIdx.x % tiles_per_b) * ls + lane) * VEC;
  const int64_t left = p.S - s0;
  const int n = left <= 0 ? 0 : (left < VEC ? int(left) : VEC);
  const T* x = static_cast<const T*>(p.x) + b * p.C * p.S + s0;
  T* out = static_cast<T*>(p.out) + b * p.C * p.S + s0;

  float k[VEC];
  float f[VEC];
  float s1[VEC];
  float s2[VEC];
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    k[j] = 0.f;
    s1[j] = 0.f;
    s2[j] = 0.f;
  }
  if (n > 0) load_t<T, VEC>(x, 0, n, k);
#pragma unroll 4
  for (int64_t c = crow; c < p.C && n > 0; c += cs) {
    load_t<T, VEC>(x, c * p.S, n, f);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float d = f[j] - k[j];
      s1[j] += d;
      s2[j] += d * d;
    }
  }
  split_sum<VEC>(s1, s2, red, ls, cs);
  const float fc = float(p.C);
  float mean[VEC];
  float rstd[VEC];
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    const float m1 = s1[j] / fc;
    mean[j] = k[j] + m1;
    rstd[j] = rsqrtf(fmaxf(s2[j] / fc - m1 * m1, 0.f) + p.eps);
  }
#pragma unroll 4
  for (int64_t c = crow; c < p.C && n > 0; c += cs) {
    float w[1];
    float bb[1];
    load_dyn<1>(p.weight, p.w_dtype, c, 1, 0.f, w);
    load_dyn<1>(p.bias, p.b_dtype, c, 1, 0.f, bb);
    load_t<T, VEC>(x, c * p.S, n, f);
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = (f[j] - mean[j]) * rstd[j] * w[0] + bb[0];
    store_t<T, VEC>(out, c * p.S, n, f);
  }
}

// Few positions (S <= kSmallS): one block per (b, s), its threads over C, each holding up to
// kSmallPer values in registers (two-pass statistics from registers, one read of x).
constexpr int kSmallS = 64;
constexpr int kSmallPer = 8;

template <typename T>
__global__ void __launch_bounds__(1024) channels_first_small(const ChannelsFirstParams p) {
  __shared__ float smem[32];
  const int64_t b = blockIdx.x / p.S;
  const int64_t s = blockIdx.x % p.S;
  const T* x = static_cast<const T*>(p.x) + b * p.C * p.S + s;
  T* out = static_cast<T*>(p.out) + b * p.C * p.S + s;
  float v[kSmallPer];
  float s1 = 0.f;
#pragma unroll
  for (int i = 0; i < kSmallPer; ++i) {
    const int64_t c = threadIdx.x + int64_t(i) * blockDim.x;
    v[i] = c < p.C ? to_f32(x[c * p.S]) : 0.f;
    s1 += v[i];
  }
  const float fc = float(p.C);
  const float mean = group_sum(s1, blockDim.x, smem) / fc;
  float q = 0.f;
#pragma unroll
  for (int i = 0; i < kSmallPer; ++i) {
    const int64_t c = threadIdx.x + int64_t(i) * blockDim.x;
    const float d = c < p.C ? v[i] - mean : 0.f;
    q += d * d;
  }
  const float rstd = rsqrtf(group_sum(q, blockDim.x, smem) / fc + p.eps);
#pragma unroll
  for (int i = 0; i < kSmallPer; ++i) {
    const int64_t c = threadIdx.x + int64_t(i) * blockDim.x;
    if (c >= p.C) continue;
    float w[1];
    float bb[1];
    load_dyn<1>(p.weight, p.w_dtype, c, 1, 0.f, w);
    load_dyn<1>(p.bias, p.b_dtype, c, 1, 0.f, bb);
    out[c * p.S] = from_f32<T>((v[i] - mean) * rstd * w[0] + bb[0]);
  }
}

template <typename T>
cudaError_t launch_typed(const ChannelsFirstParams& p, cudaStream_t st) {
  if (p.S <= kSmallS && p.C <= int64_t(kSmallPer) * 1024) {
    const int64_t per_thread = (p.C + 1023) / 1024;  // fewest values per thread with 1024
    const int64_t threads = ((p.C + per_thread - 1) / per_thread + 31) / 32 * 32;
    channels_first_small<T><<<dim3(unsigned(p.B * p.S)), unsigned(threads), 0, st>>>(p);
    return cudaGetLastError();
  }
  constexpr int kVec = 16 / int(sizeof(T));
  const bool vec = p.S % kVec == 0 && (reinterpret_cast<uintptr_t>(p.x) & 15u) == 0 &&
                   (reinterpret_cast<uintptr_t>(p.out) & 15u) == 0;
  const int v = vec ? kVec : 1;
  const int64_t chunks = (p.S + v - 1) / v;
  // 2 to 8 lanes along s (2 fill a 32-byte sector), fewer when that leaves too few blocks;
  // the other threads of the block split C.
  const int64_t want_blocks = 2 * 132;
  int ls = 2;
  while (ls < 8 && (chunks / (ls * 2)) * p.B >= want_blocks) ls *= 2;
  const int64_t tiles = (chunks + ls - 1) / ls;
  const dim3 grid(unsigned(tiles * p.B));
  if (vec) {
    channels_first_kernel<T, kVec><<<grid, kThreads, 0, st>>>(p, ls, tiles);
  } else {
    channels_first_kernel<T, 1><<<grid, kThreads, 0, st>>>(p, ls, tiles);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_channels_first(const ChannelsFirstParams& p, cudaStream_t stream) {
  if (p.B == 0 || p.C == 0 || p.S == 0) return cudaSuccess;
  switch (p.dtype) {
    case kF32: return launch_typed<float>(p, stream);
    case kF16: return launch_typed<__half>(p, stream);
    case kBF16: return launch_typed<__nv_bfloat16>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace normswitch
