// The per-thread work of the row-norm kernels (row_norm.cuh): a thread's share of a row
// (Share), how its chunks are held in registers (Held: raw 16-bit words or fp32), and the
// op's loads, statistics and stores for each compile-time kind (RowOp).
#pragma once

#include <type_traits>

#include "common.cuh"

namespace normswitch {
namespace rows {

enum Kind : int {
  kRms = 0,            // x -> y, RMS statistics, optional weight, no bias
  kLayer = 1,          // x -> y, LayerNorm (or RMS) statistics, optional weight and bias
  kResidual = 2,       // r = round(x + residual) of x's dtype, stored; y = rms_norm(r)
  kResidualMixed = 3,  // the same with a residual of another dtype (fp32 cache)
  kGated = 4,          // y *= silu(z) after the affine norm (RMS or LayerNorm)
  kGatedFirst = 5,     // v = x * silu(z) before the statistics (fp32 cache)
};

// Whether a kind keeps 16-byte chunks as raw words (else fp32 values), and its statistics.
__host__ __device__ constexpr bool raw_kind(int kind) { return kind != kResidualMixed && kind != kGatedFirst; }
__host__ __device__ constexpr bool has_bias(int kind) { return kind == kLayer || kind == kGated || kind == kGatedFirst; }
__device__ __forceinline__ bool rms_stats(int kind, const RowNormParams& p) {
  return (kind == kLayer || kind == kGated || kind == kGatedFirst) ? p.rms : true;
}

template <typename T>
struct DTypeOf {
  static constexpr int value = sizeof(T) == 4 ? kF32 : (std::is_same<T, __half>::value ? kF16 : kBF16);
};

// A thread's share of a row: VPT chunks of VEC elements at element offsets e[k] from the
// row's first column; in[k] when the chunk lies inside the row (rows are whole chunks).
template <int VPT>
struct Share {
  int e[VPT];
  bool in[VPT];
};

template <int VEC, int VPT>
__device__ __forceinline__ Share<VPT> make_share(int first_chunk, int step, int len) {
  Share<VPT> sh;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    sh.e[k] = (first_chunk + k * step) * VEC;
    sh.in[k] = sh.e[k] < len;
  }
  return sh;
}

// Chunks held as raw words of T (RAW: 16-byte chunks of 16-bit data) or as fp32 bits.
template <typename T, int VEC, bool RAW>
struct Held {
  static constexpr int kWords = RAW ? VEC * int(sizeof(T)) / 4 : VEC;
  static_assert(!RAW || VEC * sizeof(T) == 16, "raw chunks are 16 bytes");

  __device__ static __forceinline__ void load(const T* p, uint32_t (&w)[kWords]) {
    if constexpr (RAW) {
      load_words<kWords>(p, w);
    } else {
      float f[VEC];
      load_pack<T, VEC>(p, f);
#pragma unroll
      for (int j = 0; j < VEC; ++j) w[j] = __float_as_uint(f[j]);
    }
  }
  __device__ static __forceinline__ float get(const uint32_t (&w)[kWords], int j) {
    if constexpr (RAW) {
      return word_elem<T>(w, j);
    } else {
      return __uint_as_float(w[j]);
    }
  }
  __device__ static __forceinline__ void set(uint32_t (&w)[kWords], const float (&f)[VEC]) {
    if constexpr (RAW && sizeof(T) == 2) {
#pragma unroll
      for (int j = 0; j < VEC / 2; ++j) w[j] = elem_bits<T>(f[2 * j]) | (elem_bits<T>(f[2 * j + 1]) << 16);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j) w[j] = __float_as_uint(f[j]);
    }
  }
};

// One chunk of a parameter (weight, bias) of runtime dtype dt at column col, as fp32.
template <int VEC>
__device__ __forceinline__ void load_param_chunk(const void* base, int dt, int64_t col,
                                                 float (&f)[VEC]) {
  if (dt == kF32) {
    load_pack<float, VEC>(static_cast<const float*>(base) + col, f);
  } else if (dt == kF16) {
    load_pack<__half, VEC>(static_cast<const __half*>(base) + col, f);
  } else {
    load_pack<__nv_bfloat16, VEC>(static_cast<const __nv_bfloat16*>(base) + col, f);
  }
}

template <typename T, int VEC, int VPT, int KIND>
struct RowOp {
  static constexpr bool kRaw = VEC > 1 && raw_kind(KIND);
  static constexpr bool kHasZ = KIND == kGated || KIND == kGatedFirst;
  using H = Held<T, VEC, kRaw>;  // the share of x (after the residual add or first gate)
  using P = Held<T, VEC, VEC * sizeof(T) == 16>;  // parameters and gate in x's dtype
  static constexpr int kW = H::kWords;
  static constexpr int kPW = P::kWords;

  uint32_t v[VPT][kW];
  uint32_t zz[kHasZ ? VPT : 1][kPW];
  const T* w_s = nullptr;  // weight / bias staged in shared memory by the block, or null
  const T* b_s = nullptr;

  // Issues every load of the share, then combines residual / first gate into v.
  __device__ __forceinline__ void load(const RowNormParams& p, int64_t m, int64_t col0,
                                       const Share<VPT>& sh, bool from_res_out) {
    if constexpr (KIND == kResidual || KIND == kResidualMixed) {
      if (from_res_out) {
        load_res_out(p, m, col0, sh);
        return;
      }
    }
    const T* x = static_cast<const T*>(p.x) + m * p.x_stride + col0;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      if (sh.in[k]) H::load(x + sh.e[k], v[k]);
    }
    uint32_t r[KIND == kResidual ? VPT : 1][kW];
    if constexpr (KIND == kResidual) {
      const T* rp = static_cast<const T*>(p.residual) + m * p.res_stride + col0;
#pragma unroll
      for (int k = 0; k < VPT; ++k) {
        if (sh.in[k]) H::load(rp + sh.e[k], r[k]);
      }
    }
    if constexpr (kHasZ) {
      const T* zp = static_cast<const T*>(p.z) + m * p.z_stride + col0;
#pragma unroll
      for (int k = 0; k < VPT; ++k) {
        if (sh.in[k]) P::load(zp + sh.e[k], zz[k]);
      }
    }
    if constexpr (KIND == kResidual) {
      T* ro = static_cast<T*>(p.res_out) + m * p.res_out_stride + col0;
#pragma unroll
      for (int k = 0; k < VPT; ++k) {
        if (!sh.in[k]) continue;
        float f[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j) f[j] = round_to<T>(H::get(v[k], j) + H::get(r[k], j));
        H::set(v[k], f);
        store_pack<T, VEC>(ro + sh.e[k], f);
      }
    }
    if constexpr (KIND == kResidualMixed) add_mixed_residual(p, m, col0, sh);
    if constexpr (KIND == kGatedFirst) {
      if (p.gate_first) {
#pragma unroll
        for (int k = 0; k < VPT; ++k) {
          if (!sh.in[k]) continue;
          float f[VEC];
#pragma unroll
          for (int j = 0; j < VEC; ++j) f[j] = H::get(v[k], j) * silu(P::get(zz[k], j));
          H::set(v[k], f);
        }
      }
    }
  }

  template <typename E>
  __device__ __forceinline__ void add_residual_as(const RowNormParams& p, int64_t m,
                                                  int64_t col0, const Share<VPT>& sh) {
    const E* rp = static_cast<const E*>(p.residual) + m * p.res_stride + col0;
    E* ro = static_cast<E*>(p.res_out) + m * p.res_out_stride + col0;
    float r[VPT][VEC];
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      if (sh.in[k]) load_pack<E, VEC>(rp + sh.e[k], r[k]);
    }
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      if (!sh.in[k]) continue;
#pragma unroll
      for (int j = 0; j < VEC; ++j) r[k][j] = round_to<E>(H::get(v[k], j) + r[k][j]);
      H::set(v[k], r[k]);
      store_pack<E, VEC>(ro + sh.e[k], r[k]);
    }
  }

  __device__ __forceinline__ void add_mixed_residual(const RowNormParams& p, int64_t m,
                                                     int64_t col0, const Share<VPT>& sh) {
    if (p.res_dtype == kF32) {
      add_residual_as<float>(p, m, col0, sh);
    } else if (p.res_dtype == kF16) {
      add_residual_as<__half>(p, m, col0, sh);
    } else {
      add_residual_as<__nv_bfloat16>(p, m, col0, sh);
    }
  }

  template <typename E>
  __device__ __forceinline__ void load_res_out_as(const RowNormParams& p, int64_t m,
                                                  int64_t col0, const Share<VPT>& sh) {
    const E* ro = static_cast<const E*>(p.res_out) + m * p.res_out_stride + col0;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      if (!sh.in[k]) continue;
      float f[VEC];
      load_pack<E, VEC>(ro + sh.e[k], f);
      H::set(v[k], f);
    }
  }

  __device__ __forceinline__ void load_res_out(const RowNormParams& p, int64_t m, int64_t col0,
                                               const Share<VPT>& sh) {
    if (p.res_dtype == kF32) {
      load_res_out_as<float>(p, m, col0, sh);
    } else if (p.res_dtype == kF16) {
      load_res_out_as<__half>(p, m, col0, sh);
    } else {
      load_res_out_as<__nv_bfloat16>(p, m, col0, sh);
    }
  }

  __device__ __forceinline__ float sum(const Share<VPT>& sh, bool squares) const {
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      if (!sh.in[k]) continue;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float x = H::get(v[k], j);
        s += squares ? x * x : x;
      }
    }
    return s;
  }

  __device__ __forceinline__ float var(const Share<VPT>& sh, float mean) const {
    float q = 0.f;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      if (!sh.in[k]) continue;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float d = H::get(v[k], j) - mean;
        q += d * d;
      }
    }
    return q;
  }

  // HF order for RMSNorm (round(round(xh) * (w + offset))), else one rounding of
  // xh * w + b, gated by silu(z) when the gate comes after.
  __device__ __forceinline__ void store(const RowNormParams& p, int64_t m, int64_t col0,
                                        const Share<VPT>& sh, float mean, float rstd) const {
    T* out = static_cast<T*>(p.out) + m * p.out_stride + col0;
    const bool has_w = p.weight != nullptr;
    const bool has_b = has_bias(KIND) && p.bias != nullptr;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      if (!sh.in[k]) continue;
      float wf[VEC];
      float bf[VEC];
      if (has_w) {
        if (w_s != nullptr) {
          load_pack<T, VEC>(w_s + col0 + sh.e[k], wf);
        } else {
          load_param_chunk<VEC>(p.weight, p.w_dtype, col0 + sh.e[k], wf);
        }
      }
      if (has_b) {
        if (b_s != nullptr) {
          load_pack<T, VEC>(b_s + col0 + sh.e[k], bf);
        } else {
          load_param_chunk<VEC>(p.bias, p.b_dtype, col0 + sh.e[k], bf);
        }
      }
      float y[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        float t = (H::get(v[k], j) - mean) * rstd;
        if (p.hf_round) t = round_to<T>(t);
        if (has_w) t *= wf[j] + p.offset;
        if (has_b) t += bf[j];
        if constexpr (KIND == kGated) t *= silu(P::get(zz[k], j));
        y[j] = t;
      }
      store_pack<T, VEC>(out + sh.e[k], y);
    }
  }
};

__device__ __forceinline__ void store_stats(const RowNormParams& p, int64_t m, int64_t g,
                                            float mean, float rstd) {
  if (p.mean != nullptr) p.mean[g * p.M + m] = mean;
  if (p.rstd != nullptr) p.rstd[g * p.M + m] = rstd;
}

}  // namespace rows
}  // namespace normswitch
