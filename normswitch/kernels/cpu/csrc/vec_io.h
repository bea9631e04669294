// Row I/O for the CPU kernels: blocks of two float vectors read from / written to float32,
// bfloat16 or float16 storage (at::vec conversions, round to nearest even), scalar tails.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <type_traits>

namespace normswitch_cpu {

using at::vec::Vectorized;
using fVec = Vectorized<float>;

// Values per block: two float vectors, which is one vector of a 16-bit type.
constexpr int64_t kBlock = 2 * fVec::size();

template <typename T>
inline void load(const T* p, fVec& a, fVec& b) {
  if constexpr (std::is_same_v<T, float>) {
    a = fVec::loadu(p);
    b = fVec::loadu(p + fVec::size());
  } else {
    static_assert(Vectorized<T>::size() == kBlock, "a 16-bit vector holds two float vectors");
    std::tie(a, b) = at::vec::convert_to_float<T>(Vectorized<T>::loadu(p));
  }
}

template <typename T>
inline void store(T* p, const fVec& a, const fVec& b) {
  if constexpr (std::is_same_v<T, float>) {
    a.store(p);
    b.store(p + fVec::size());
  } else {
    at::vec::convert_from_float<T>(a, b).store(p);
  }
}

// load/store of the first `count` (1..kBlock) values of a block; the lanes past it read as 0 and
// are not written.
template <typename T>
inline void load_n(const T* p, fVec& a, fVec& b, int64_t count) {
  if constexpr (std::is_same_v<T, float>) {
    const int64_t lo = std::min<int64_t>(count, fVec::size());
    a = fVec::loadu(p, lo);
    b = count > lo ? fVec::loadu(p + lo, count - lo) : fVec(0.0f);
  } else {
    std::tie(a, b) = at::vec::convert_to_float<T>(Vectorized<T>::loadu(p, count));
  }
}

template <typename T>
inline void store_n(T* p, const fVec& a, const fVec& b, int64_t count) {
  if constexpr (std::is_same_v<T, float>) {
    const int64_t lo = std::min<int64_t>(count, fVec::size());
    a.store(p, lo);
    if (count > lo) {
      b.store(p + lo, count - lo);
    }
  } else {
    at::vec::convert_from_float<T>(a, b).store(p, count);
  }
}

// Round float32 values to T and back (no-op for float32): the cast points of the op contracts.
template <typename T>
inline void round_to(fVec& a, fVec& b) {
  if constexpr (!std::is_same_v<T, float>) {
    std::tie(a, b) = at::vec::convert_to_float<T>(at::vec::convert_from_float<T>(a, b));
  }
}

template <typename T>
inline float round_to(float v) {
  return static_cast<float>(static_cast<T>(v));
}

inline float hsum(const fVec& v) {
  return at::vec::vec_reduce_all<float>([](fVec& p, fVec& q) { return p + q; }, v);
}

// silu(z) = z * sigmoid(z), computed as z / (1 + exp(-z)) like PyTorch's CPU kernel. The vector
// exp is ATen's exp_u20 (a degree-5 polynomial, within 20 ulp: about 1e-6 relative, a tenth of the
// float32 tolerance), which inductor's CPU code also uses; Sleef's exp_u10 made the gated norm
// slower than torch.compile of the seed code. The scalar tail keeps std::exp.
inline fVec silu(const fVec& z) {
  return z / (fVec(1.0f) + z.neg().exp_u20());
}

inline float silu(float z) {
  return z / (1.0f + std::exp(-z));
}

}  // namespace normswitch_cpu
