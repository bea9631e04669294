// RMSNorm and fused add RMSNorm rows with AVX-512 intrinsics, chosen at run time (simd_rows.h).
// The portable kernels (rms_norm.cpp) convert bfloat16 with integer arithmetic; here one
// VCVTNEPS2BF16 rounds 16 floats to nearest even, VDPBF16PS adds the squares of 32 bfloat16 values,
// tails use masked loads and stores (every element of a row goes through the same instructions),
// and outputs too large for the caches are written with non-temporal stores. Rounding points are
// those of the portable kernels (HF order: round(x * rstd), times the float32 weight, round); a
// row's result depends on that row alone. Note: like every AVX512_BF16 instruction, these treat
// float32/bfloat16 values below the normal range as zero (irrelevant to a norm's output).
#include "simd_rows.h"

#include <atomic>
#include <cmath>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NORMSWITCH_X86 1
#endif

namespace normswitch_cpu::avx512 {
namespace {
std::atomic<bool> force_portable{false};
}  // namespace

void set_path(bool portable) { force_portable = portable; }

#ifdef NORMSWITCH_X86

namespace {

bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return has;
}

bool cpu_has_bf16() {
  static const bool has = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return has;
}

}  // namespace

bool usable(DType x) {
  if (force_portable) {
    return false;
  }
  return x == DType::BF16 ? cpu_has_bf16() : cpu_has_avx512();
}

const char* path_name() {
  if (force_portable || !cpu_has_avx512()) {
    return "portable";
  }
  return cpu_has_bf16() ? "avx512-bf16" : "avx512 (bfloat16 portable)";
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")

namespace {

constexpr int64_t kLanes = 16;

inline __mmask16 tail_mask(int64_t left) {
  return left >= kLanes ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

// Loads, stores and the round trip through the storage type, per dtype; `m` masks a tail.
template <DType D>
struct Io;

template <>
struct Io<DType::F32> {
  using S = float;
  static __m512 load(const S* p) { return _mm512_loadu_ps(p); }
  static __m512 load(const S* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(S* p, __m512 v) { _mm512_storeu_ps(p, v); }
  static void store(S* p, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
  static void stream(S* p, __m512 v) { _mm512_stream_ps(p, v); }
  static __m512 round(__m512 v) { return v; }
};

inline __m512 widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

inline __m256i narrow_bf16(__m512 v) { return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)); }

template <>
struct Io<DType::BF16> {
  using S = uint16_t;
  static __m512 load(const S* p) { return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static __m512 load(const S* p, __mmask16 m) { return widen_bf16(_mm256_maskz_loadu_epi16(m, p)); }
  static void store(S* p, __m512 v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow_bf16(v)); }
  static void store(S* p, __m512 v, __mmask16 m) { _mm256_mask_storeu_epi16(p, m, narrow_bf16(v)); }
  static void stream(S* p, __m512 v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), narrow_bf16(v)); }
  static __m512 round(__m512 v) { return widen_bf16(narrow_bf16(v)); }
};

constexpr int kHalfRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

template <>
struct Io<DType::F16> {
  using S = uint16_t;
  static __m512 load(const S* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static __m512 load(const S* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
  static void store(S* p, __m512 v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, kHalfRound));
  }
  static void store(S* p, __m512 v, __mmask16 m) { _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(v, kHalfRound)); }
  static void stream(S* p, __m512 v) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, kHalfRound));
  }
  static __m512 round(__m512 v) { return _mm512_cvtph_ps(_mm512_cvtps_ph(v, kHalfRound)); }
};

inline float inv_rms(float sum_sq, int64_t n, float eps) {
  return 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
}

// Sum of squares of x[0, n): two accumulators over blocks of 32, the tail masked into the first.
template <DType D>
float sum_squares(const typename Io<D>::S* x, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    const __m512 a = Io<D>::load(x + i), b = Io<D>::load(x + i + kLanes);
    s0 = _mm512_add_ps(s0, _mm512_mul_ps(a, a));
    s1 = _mm512_add_ps(s1, _mm512_mul_ps(b, b));
  }
  for (; i < n; i += kLanes) {
    const __m512 a = Io<D>::load(x + i, tail_mask(n - i));
    s0 = _mm512_add_ps(s0, _mm512_mul_ps(a, a));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// bfloat16: VDPBF16PS adds the squares of 32 values into 16 float32 lanes in one instruction
// (bfloat16 products are exact in float32; each lane adds its two products in order).
template <>
float sum_squares<DType::BF16>(const uint16_t* x, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    const __m512bh a = reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + i));
    const __m512bh b = reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + i + 2 * kLanes));
    s0 = _mm512_dpbf16_ps(s0, a, a);
    s1 = _mm512_dpbf16_ps(s1, b, b);
  }
  for (; i < n; i += 2 * kLanes) {
    const int64_t left = n - i;
    const __mmask32 m = left >= 2 * kLanes ? ~__mmask32{0} : static_cast<__mmask32>((1ull << left) - 1ull);
    const __m512bh a = reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, x + i));
    s0 = _mm512_dpbf16_ps(s0, a, a);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// y = round(round(x * rstd) * w) with w the float32 weight (offset included); without w,
// y = round(x * rstd).
template <DType D>
inline __m512 scaled(__m512 a, __m512 r, const float* w, __mmask16 m, bool full) {
  a = _mm512_mul_ps(a, r);
  if (w == nullptr) {
    return a;
  }
  return _mm512_mul_ps(Io<D>::round(a), full ? _mm512_loadu_ps(w) : _mm512_maskz_loadu_ps(m, w));
}

// With `stream`, full blocks bypass the caches (non-temporal stores, for outputs too large to stay
// in them: no read of the old lines); y must then be aligned to a block.
template <DType D>
void scale_row(const typename Io<D>::S* x, typename Io<D>::S* y, const float* w, float rstd, int64_t n,
               bool stream = false) {
  const __m512 r = _mm512_set1_ps(rstd);
  int64_t i = 0;
  if (stream) {
    for (; i + kLanes <= n; i += kLanes) {
      Io<D>::stream(y + i, scaled<D>(Io<D>::load(x + i), r, w == nullptr ? nullptr : w + i, 0, true));
    }
  }
  for (; i + kLanes <= n; i += kLanes) {
    Io<D>::store(y + i, scaled<D>(Io<D>::load(x + i), r, w == nullptr ? nullptr : w + i, 0, true));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    Io<D>::store(y + i, scaled<D>(Io<D>::load(x + i, m), r, w == nullptr ? nullptr : w + i, m, false), m);
  }
}

// r = round(x + res) into r; returns the sum of squares of the rounded r.
template <DType D>
float add_row(const typename Io<D>::S* x, const typename Io<D>::S* res, typename Io<D>::S* r, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    const __m512 a = Io<D>::round(_mm512_add_ps(Io<D>::load(x + i), Io<D>::load(res + i)));
    const __m512 b = Io<D>::round(_mm512_add_ps(Io<D>::load(x + i + kLanes), Io<D>::load(res + i + kLanes)));
    Io<D>::store(r + i, a);
    Io<D>::store(r + i + kLanes, b);
    s0 = _mm512_add_ps(s0, _mm512_mul_ps(a, a));
    s1 = _mm512_add_ps(s1, _mm512_mul_ps(b, b));
  }
  for (; i < n; i += kLanes) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 a = Io<D>::round(_mm512_add_ps(Io<D>::load(x + i, m), Io<D>::load(res + i, m)));
    Io<D>::store(r + i, a, m);
    s0 = _mm512_add_ps(s0, _mm512_mul_ps(a, a));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// bfloat16: each sum is narrowed once, stored, and its squares added by VDPBF16PS.
template <>
float add_row<DType::BF16>(const uint16_t* x, const uint16_t* res, uint16_t* r, int64_t n) {
  using Io16 = Io<DType::BF16>;
  __m512 s = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    const __m256i a = narrow_bf16(_mm512_add_ps(Io16::load(x + i), Io16::load(res + i)));
    const __m256i b = narrow_bf16(_mm512_add_ps(Io16::load(x + i + kLanes), Io16::load(res + i + kLanes)));
    const __m512i ab = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    _mm512_storeu_si512(r + i, ab);
    s = _mm512_dpbf16_ps(s, reinterpret_cast<__m512bh>(ab), reinterpret_cast<__m512bh>(ab));
  }
  for (; i < n; i += kLanes) {
    const __mmask16 m = tail_mask(n - i);
    const __m256i a = narrow_bf16(_mm512_add_ps(Io16::load(x + i, m), Io16::load(res + i, m)));
    _mm256_mask_storeu_epi16(r + i, m, a);
    const __m512i a0 = _mm512_maskz_mov_epi64(0x0F, _mm512_castsi256_si512(a));  // masked-off lanes are 0
    s = _mm512_dpbf16_ps(s, reinterpret_cast<__m512bh>(a0), reinterpret_cast<__m512bh>(a0));
  }
  return _mm512_reduce_add_ps(s);
}

template <DType D>
void rms_rows_t(const void* xv, int64_t xs, void* yv, int64_t ys, const float* w, float eps, int64_t n,
                int64_t begin, int64_t end, bool stream) {
  using S = typename Io<D>::S;
  const S* x = static_cast<const S*>(xv);
  S* y = static_cast<S*>(yv);
  for (int64_t row = begin; row < end; ++row) {
    const S* xr = x + row * xs;
    S* yr = y + row * ys;
    const bool aligned = reinterpret_cast<uintptr_t>(yr) % (kLanes * sizeof(S)) == 0;
    scale_row<D>(xr, yr, w, inv_rms(sum_squares<D>(xr, n), n, eps), n, stream && aligned);
  }
  if (stream) {
    _mm_sfence();  // the streamed lines are visible before the caller's threads join
  }
}

template <DType D>
void add_rms_rows_t(const void* xv, int64_t xs, const void* resv, int64_t rs, void* rv, int64_t os, void* yv,
                    int64_t ys, const float* w, float eps, int64_t n, int64_t begin, int64_t end) {
  using S = typename Io<D>::S;
  const S* x = static_cast<const S*>(xv);
  const S* res = static_cast<const S*>(resv);
  S* r = static_cast<S*>(rv);
  S* y = static_cast<S*>(yv);
  for (int64_t row = begin; row < end; ++row) {
    S* sum = r + row * os;
    const float ss = add_row<D>(x + row * xs, res + row * rs, sum, n);
    scale_row<D>(sum, y + row * ys, w, inv_rms(ss, n, eps), n);
  }
}

template <DType D>
void weight_t(const void* wv, float offset, float* out, int64_t n) {
  const auto* w = static_cast<const typename Io<D>::S*>(wv);
  const __m512 off = _mm512_set1_ps(offset);
  for (int64_t i = 0; i < n; i += kLanes) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_add_ps(Io<D>::load(w + i, m), off));
  }
}

using RmsRows = void (*)(const void*, int64_t, void*, int64_t, const float*, float, int64_t, int64_t, int64_t, bool);
using AddRmsRows = void (*)(const void*, int64_t, const void*, int64_t, void*, int64_t, void*, int64_t, const float*,
                            float, int64_t, int64_t, int64_t);
using Weight = void (*)(const void*, float, float*, int64_t);

// The instantiations, indexed by the DType values.
constexpr RmsRows kRms[3] = {rms_rows_t<DType::F32>, rms_rows_t<DType::BF16>, rms_rows_t<DType::F16>};
constexpr AddRmsRows kAddRms[3] = {add_rms_rows_t<DType::F32>, add_rms_rows_t<DType::BF16>,
                                   add_rms_rows_t<DType::F16>};
constexpr Weight kWeight[3] = {weight_t<DType::F32>, weight_t<DType::BF16>, weight_t<DType::F16>};

}  // namespace

void weight_f32(DType wt, const void* w, float offset, float* out, int64_t n) {
  kWeight[static_cast<int>(wt)](w, offset, out, n);
}

void rms_rows(DType t, const void* x, int64_t xs, void* y, int64_t ys, const float* w, float eps, int64_t n,
              int64_t begin, int64_t end, bool stream) {
  kRms[static_cast<int>(t)](x, xs, y, ys, w, eps, n, begin, end, stream);
}

void add_rms_rows(DType t, const void* x, int64_t xs, const void* res, int64_t rs, void* r, int64_t os, void* y,
                  int64_t ys, const float* w, float eps, int64_t n, int64_t begin, int64_t end) {
  kAddRms[static_cast<int>(t)](x, xs, res, rs, r, os, y, ys, w, eps, n, begin, end);
}

#pragma GCC pop_options

#else  // not x86-64 with GCC/Clang: the portable kernels serve every call

bool usable(DType) { return false; }

const char* path_name() { return "portable"; }

void weight_f32(DType, const void*, float, float*, int64_t) {}

void rms_rows(DType, const void*, int64_t, void*, int64_t, const float*, float, int64_t, int64_t, int64_t, bool) {}

void add_rms_rows(DType, const void*, int64_t, const void*, int64_t, void*, int64_t, void*, int64_t, const float*,
                  float, int64_t, int64_t, int64_t) {}

#endif

}  // namespace normswitch_cpu::avx512
