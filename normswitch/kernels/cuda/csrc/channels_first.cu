// LayerNorm over dim 1 of a contiguous (B, C, S) tensor (SAM's LayerNorm2d on NCHW).
// A block covers 32 * VEC consecutive positions s of one b; its 8 thread rows split C.
// Each warp reads VEC contiguous elements per thread for one c (16-byte coalesced
// accesses when S is a multiple of VEC); the C sums meet in shared memory. Three passes
// over the block's slab (mean, variance, output); the re-reads are meant to hit L2.
#include "common.cuh"

namespace normswitch {
namespace {

constexpr int kLanes = 32;
constexpr int kSplit = 8;

template <int VEC>
__device__ __forceinline__ void split_sum(float (&acc)[VEC], float (*red)[kLanes][VEC]) {
#pragma unroll
  for (int j = 0; j < VEC; ++j) red[threadIdx.y][threadIdx.x][j] = acc[j];
  __syncthreads();
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    float s = 0.f;
    for (int i = 0; i < kSplit; ++i) s += red[i][threadIdx.x][j];
    acc[j] = s;
  }
  __syncthreads();
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kLanes* kSplit) channels_first_kernel(
    const ChannelsFirstParams p, int64_t blocks_per_b) {
  __shared__ float red[kSplit][kLanes][VEC];
  const int64_t b = blockIdx.x / blocks_per_b;
  const int64_t s0 = ((blockIdx.x % blocks_per_b) * kLanes + threadIdx.x) * VEC;
  const int64_t left = p.S - s0;
  const int n = left <= 0 ? 0 : (left < VEC ? int(left) : VEC);
  const int64_t base = b * p.C * p.S + s0;
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);

  float acc[VEC];
  float f[VEC];
#pragma unroll
  for (int j = 0; j < VEC; ++j) acc[j] = 0.f;
  for (int64_t c = threadIdx.y; c < p.C && n > 0; c += kSplit) {
    load_t<T, VEC>(x, base + c * p.S, n, f);
#pragma unroll
    for (int j = 0; j < VEC; ++j) acc[j] += f[j];
  }
  split_sum<VEC>(acc, red);
  const float fc = float(p.C);
  float mean[VEC];
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    mean[j] = acc[j] / fc;
    acc[j] = 0.f;
  }
  for (int64_t c = threadIdx.y; c < p.C && n > 0; c += kSplit) {
    load_t<T, VEC>(x, base + c * p.S, n, f);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float d = f[j] - mean[j];
      acc[j] += d * d;
    }
  }
  split_sum<VEC>(acc, red);
  float rstd[VEC];
#pragma unroll
  for (int j = 0; j < VEC; ++j) rstd[j] = rsqrtf(acc[j] / fc + p.eps);
  for (int64_t c = threadIdx.y; c < p.C && n > 0; c += kSplit) {
    float wb[1];
    float bb[1];
    load_dyn<1>(p.weight, p.w_dtype, c, 1, 0.f, wb);
    load_dyn<1>(p.bias, p.b_dtype, c, 1, 0.f, bb);
    load_t<T, VEC>(x, base + c * p.S, n, f);
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = (f[j] - mean[j]) * rstd[j] * wb[0] + bb[0];
    store_t<T, VEC>(out, base + c * p.S, n, f);
  }
}

template <typename T>
cudaError_t launch_typed(const ChannelsFirstParams& p, cudaStream_t st) {
  constexpr int kVec = 16 / int(sizeof(T));
  const bool vec = p.S % kVec == 0 && (reinterpret_cast<uintptr_t>(p.x) & 15u) == 0 &&
                   (reinterpret_cast<uintptr_t>(p.out) & 15u) == 0;
  const int v = vec ? kVec : 1;
  const int64_t per_b = (p.S + int64_t(kLanes) * v - 1) / (int64_t(kLanes) * v);
  const dim3 grid(unsigned(per_b * p.B));
  const dim3 block(kLanes, kSplit);
  if (vec) {
    channels_first_kernel<T, kVec><<<grid, block, 0, st>>>(p, per_b);
  } else {
    channels_first_kernel<T, 1><<<grid, block, 0, st>>>(p, per_b);
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
