// LayerNorm over dim 1 of a contiguous (B, C, S) tensor (SAM's LayerNorm2d on NCHW).
// A block of 256 threads is LS lanes along s (VEC consecutive positions each: 16-byte accesses
// when S is a multiple of VEC) times CS = 256 / LS thread rows that split C (loops unrolled so
// that several loads are in flight). Two passes over
// the block's slab: sums of (x - k) and (x - k)^2, shifted by the position's first channel k
// for accuracy, then the output; the sums meet in shared memory.
#include "common.cuh"

namespace normswitch {
namespace {

constexpr int kThreads = 256;
constexpr int kLanes = 4;

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

template <typename T>
cudaError_t launch_typed(const ChannelsFirstParams& p, cudaStream_t st) {
  constexpr int kVec = 16 / int(sizeof(T));
  const bool vec = p.S % kVec == 0 && (reinterpret_cast<uintptr_t>(p.x) & 15u) == 0 &&
                   (reinterpret_cast<uintptr_t>(p.out) & 15u) == 0;
  const int v = vec ? kVec : 1;
  const int64_t chunks = (p.S + v - 1) / v;
  // kLanes lanes along s, the other threads of the block split C: a fixed split, so that each
  // position's sums are added in the same order whatever S and B (batch invariance).
  const int ls = kLanes;
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
