// Device helpers shared by the normswitch kernels: conversions, 16-byte vector access,
// runtime-typed parameter loads and fp32 reductions (warp shuffles, then shared memory).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <type_traits>

#include "launch.h"

namespace normswitch {

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Rounds through T and back: the value a T store followed by a load would give.
template <typename T>
__device__ __forceinline__ float round_to(float v) { return to_f32(from_f32<T>(v)); }

// Raw 32-bit words of a packed chunk: loaded and stored as uint4 (16 bytes), uint2 or one
// word, so that the accesses are really vector instructions (a struct of __nv_bfloat16 would be
// copied element by element).
template <int K>
__device__ __forceinline__ void load_words(const void* p, uint32_t (&w)[K]) {
  if constexpr (K % 4 == 0) {
#pragma unroll
    for (int i = 0; i < K / 4; ++i) {
      const uint4 v = static_cast<const uint4*>(p)[i];
      w[4 * i] = v.x;
      w[4 * i + 1] = v.y;
      w[4 * i + 2] = v.z;
      w[4 * i + 3] = v.w;
    }
  } else if constexpr (K == 2) {
    const uint2 v = *static_cast<const uint2*>(p);
    w[0] = v.x;
    w[1] = v.y;
  } else {
    static_assert(K == 1, "chunks are 4, 8 or a multiple of 16 bytes");
    w[0] = *static_cast<const uint32_t*>(p);
  }
}

template <int K>
__device__ __forceinline__ void store_words(void* p, const uint32_t (&w)[K]) {
  if constexpr (K % 4 == 0) {
#pragma unroll
    for (int i = 0; i < K / 4; ++i) {
      static_cast<uint4*>(p)[i] = make_uint4(w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]);
    }
  } else if constexpr (K == 2) {
    *static_cast<uint2*>(p) = make_uint2(w[0], w[1]);
  } else {
    static_assert(K == 1, "chunks are 4, 8 or a multiple of 16 bytes");
    *static_cast<uint32_t*>(p) = w[0];
  }
}

// Element j of a chunk held as words, as float32; and the bits of a float32 stored as E.
template <typename E>
__device__ __forceinline__ float word_elem(const uint32_t* w, int j);
template <>
__device__ __forceinline__ float word_elem<float>(const uint32_t* w, int j) {
  return __uint_as_float(w[j]);
}
template <>
__device__ __forceinline__ float word_elem<__nv_bfloat16>(const uint32_t* w, int j) {
  const uint32_t v = w[j >> 1];
  return __uint_as_float((j & 1) ? (v & 0xffff0000u) : (v << 16));
}
template <>
__device__ __forceinline__ float word_elem<__half>(const uint32_t* w, int j) {
  const uint32_t v = w[j >> 1];
  return __half2float(__ushort_as_half(static_cast<unsigned short>((j & 1) ? (v >> 16) : v)));
}

template <typename E>
__device__ __forceinline__ uint32_t elem_bits(float v);
template <>
__device__ __forceinline__ uint32_t elem_bits<float>(float v) { return __float_as_uint(v); }
template <>
__device__ __forceinline__ uint32_t elem_bits<__nv_bfloat16>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
template <>
__device__ __forceinline__ uint32_t elem_bits<__half>(float v) {
  return __half_as_ushort(__float2half_rn(v));
}

// Loads VEC elements at p (aligned to min(16, chunk bytes) when VEC > 1) as float32.
template <typename E, int VEC>
__device__ __forceinline__ void load_pack(const E* p, float (&f)[VEC]) {
  constexpr int kBytes = int(sizeof(E)) * VEC;
  if constexpr (kBytes < 4) {
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = to_f32(p[j]);
  } else {
    uint32_t w[kBytes / 4];
    load_words<kBytes / 4>(p, w);
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = word_elem<E>(w, j);
  }
}

template <typename E, int VEC>
__device__ __forceinline__ void store_pack(E* p, const float (&f)[VEC]) {
  constexpr int kBytes = int(sizeof(E)) * VEC;
  if constexpr (kBytes < 4) {
#pragma unroll
    for (int j = 0; j < VEC; ++j) p[j] = from_f32<E>(f[j]);
  } else if constexpr (sizeof(E) == 4) {
    uint32_t w[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) w[j] = elem_bits<E>(f[j]);
    store_words<VEC>(p, w);
  } else {
    uint32_t w[VEC / 2];
#pragma unroll
    for (int j = 0; j < VEC / 2; ++j) w[j] = elem_bits<E>(f[2 * j]) | (elem_bits<E>(f[2 * j + 1]) << 16);
    store_words<VEC / 2>(p, w);
  }
}

// Loads `n` (<= VEC) elements of runtime type dt at base + idx; full packs when n == VEC.
// Missing elements read as `fill`.
template <int VEC>
__device__ __forceinline__ void load_dyn(const void* base, int dt, int64_t idx, int n,
                                         float fill, float (&f)[VEC]) {
  if (n == VEC) {
    if (dt == kF32) {
      load_pack<float, VEC>(static_cast<const float*>(base) + idx, f);
    } else if (dt == kF16) {
      load_pack<__half, VEC>(static_cast<const __half*>(base) + idx, f);
    } else {
      load_pack<__nv_bfloat16, VEC>(static_cast<const __nv_bfloat16*>(base) + idx, f);
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    if (j < n) {
      if (dt == kF32) {
        f[j] = static_cast<const float*>(base)[idx + j];
      } else if (dt == kF16) {
        f[j] = to_f32(static_cast<const __half*>(base)[idx + j]);
      } else {
        f[j] = to_f32(static_cast<const __nv_bfloat16*>(base)[idx + j]);
      }
    } else {
      f[j] = fill;
    }
  }
}

// Same, with the element type known at compile time.
template <typename T, int VEC>
__device__ __forceinline__ void load_t(const T* base, int64_t idx, int n, float (&f)[VEC]) {
  if (n == VEC) {
    load_pack<T, VEC>(base + idx, f);
    return;
  }
#pragma unroll
  for (int j = 0; j < VEC; ++j) f[j] = j < n ? to_f32(base[idx + j]) : 0.f;
}

template <typename T, int VEC>
__device__ __forceinline__ void store_t(T* base, int64_t idx, int n, const float (&f)[VEC]) {
  if (n == VEC) {
    store_pack<T, VEC>(base + idx, f);
    return;
  }
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    if (j < n) base[idx + j] = from_f32<T>(f[j]);
  }
}

// 16-byte asynchronous copies global -> shared (no registers; Ampere and later).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// z * sigmoid(z) with a fast exponential and an IEEE reciprocal (no full-precision division).
__device__ __forceinline__ float silu(float z) { return z * __frcp_rn(1.f + __expf(-z)); }

// Sum of v over the `tpr` consecutive threads that share a row. tpr is a power of two
// (<= 32) or a multiple of 32; every thread of the block must call it (it may sync the
// block). smem holds one float per warp.
__device__ __forceinline__ float group_sum(float v, int tpr, float* smem) {
  const int width = tpr < 32 ? tpr : 32;
  for (int o = width >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (tpr <= 32) return v;
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) smem[warp] = v;
  __syncthreads();
  const int wpr = tpr >> 5;
  const int first = (warp / wpr) * wpr;
  float s = 0.f;
  for (int i = 0; i < wpr; ++i) s += smem[first + i];
  __syncthreads();
  return s;
}

}  // namespace normswitch
