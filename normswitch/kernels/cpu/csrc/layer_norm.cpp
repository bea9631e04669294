// LayerNorm in float32 with one rounding (normswitch/ops/layer_norm.py), over the rows of (M, N) x
// and over the channels of contiguous (B, C, S) x (SAM's LayerNorm2d), with ATen's vector types
// (AVX-512 where the build targets it, see build.py). Statistics in two passes over data in cache:
// mean = sum(x) / N, var = sum((x - mean)^2) / N, then y = round((x - mean) * rstd * w + b).
// Each row (each position of the channels-first form) is computed alone in a fixed order: its
// result does not depend on the other rows. Channels first, the vector lanes are 32 positions side
// by side; the positions past the last full block are one partial block (the same vector
// operations on fewer lanes) or, when fewer than kScalarTail, scalar code doing per position the
// same operations in the same order (IEEE division and square root), so a position's result
// does not depend on S either.
#include "norms.h"

#include <ATen/Parallel.h>

namespace normswitch_cpu {
namespace {

template <typename T>
void layer_norm_row(const T* x, T* y, const float* w, const float* b, float eps, int64_t n) {
  fVec s0(0.0f), s1(0.0f);
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    fVec a, c;
    load(x + i, a, c);
    s0 = s0 + a;
    s1 = s1 + c;
  }
  float sum = hsum(s0 + s1);
  for (int64_t j = i; j < n; ++j) {
    sum += static_cast<float>(x[j]);
  }
  const float mean = sum / static_cast<float>(n);
  const fVec mv(mean);
  fVec q0(0.0f), q1(0.0f);
  for (i = 0; i + kBlock <= n; i += kBlock) {
    fVec a, c;
    load(x + i, a, c);
    a = a - mv;
    c = c - mv;
    q0 = q0 + a * a;
    q1 = q1 + c * c;
  }
  float sq = hsum(q0 + q1);
  for (int64_t j = i; j < n; ++j) {
    const float d = static_cast<float>(x[j]) - mean;
    sq += d * d;
  }
  const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(n) + eps);
  const fVec rv(rstd);
  for (i = 0; i + kBlock <= n; i += kBlock) {
    fVec a, c;
    load(x + i, a, c);
    a = (a - mv) * rv;
    c = (c - mv) * rv;
    if (w != nullptr) {
      a = a * fVec::loadu(w + i);
      c = c * fVec::loadu(w + i + fVec::size());
    }
    if (b != nullptr) {
      a = a + fVec::loadu(b + i);
      c = c + fVec::loadu(b + i + fVec::size());
    }
    store(y + i, a, c);
  }
  for (; i < n; ++i) {
    float v = (static_cast<float>(x[i]) - mean) * rstd;
    if (w != nullptr) {
      v = v * w[i];
    }
    if (b != nullptr) {
      v = v + b[i];
    }
    y[i] = static_cast<T>(v);
  }
}

// Positions [s, s + count) of one (C, S) image, count <= kBlock: the statistics over C lane by
// lane. A full block (count == kBlock) loads and stores whole vectors; the last one of a row of
// positions may be partial.
template <bool Full, typename T>
void channels_block(const T* x, T* y, const float* w, const float* b, float eps, int64_t c, int64_t s,
                    int64_t count) {
  auto get = [&](const T* p, fVec& a, fVec& d) {
    if constexpr (Full) {
      load(p, a, d);
    } else {
      load_n(p, a, d, count);
    }
  };
  fVec s0(0.0f), s1(0.0f);
  for (int64_t k = 0; k < c; ++k) {
    fVec a, d;
    get(x + k * s, a, d);
    s0 = s0 + a;
    s1 = s1 + d;
  }
  const fVec cv(static_cast<float>(c));
  const fVec m0 = s0 / cv, m1 = s1 / cv;
  fVec q0(0.0f), q1(0.0f);
  for (int64_t k = 0; k < c; ++k) {
    fVec a, d;
    get(x + k * s, a, d);
    a = a - m0;
    d = d - m1;
    q0 = q0 + a * a;
    q1 = q1 + d * d;
  }
  const fVec e(eps), one(1.0f);
  const fVec r0 = one / (q0 / cv + e).sqrt(), r1 = one / (q1 / cv + e).sqrt();
  for (int64_t k = 0; k < c; ++k) {
    fVec a, d;
    get(x + k * s, a, d);
    const fVec wk(w[k]), bk(b[k]);
    if constexpr (Full) {
      store(y + k * s, (a - m0) * r0 * wk + bk, (d - m1) * r1 * wk + bk);
    } else {
      store_n(y + k * s, (a - m0) * r0 * wk + bk, (d - m1) * r1 * wk + bk, count);
    }
  }
}

// One position of one (C, S) image: channels_block's operations on one lane, for the last few
// positions of a row of them (a partial block's masked loads cost more than scalar code there).
template <typename T>
void channels_one(const T* x, T* y, const float* w, const float* b, float eps, int64_t c, int64_t s) {
  float sum = 0.0f;
  for (int64_t k = 0; k < c; ++k) {
    sum += static_cast<float>(x[k * s]);
  }
  const float mean = sum / static_cast<float>(c);
  float sq = 0.0f;
  for (int64_t k = 0; k < c; ++k) {
    const float d = static_cast<float>(x[k * s]) - mean;
    sq += d * d;
  }
  const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(c) + eps);
  for (int64_t k = 0; k < c; ++k) {
    y[k * s] = static_cast<T>((static_cast<float>(x[k * s]) - mean) * rstd * w[k] + b[k]);
  }
}

// Fewer positions than this at the end of a row of them take channels_one each.
constexpr int64_t kScalarTail = 8;

}  // namespace

at::Tensor layer_norm(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                      const std::optional<at::Tensor>& bias, double eps, const std::optional<at::Tensor>& out) {
  check_rows("x", x);
  const int64_t m = x.size(0), n = x.size(1);
  at::Tensor y = out.has_value() ? *out : at::empty({m, n}, x.options());
  check_rows_like("out", y, x);
  const std::vector<float> w = float_param("weight", weight, n, 0.0f);
  const std::vector<float> b = float_param("bias", bias, n, 0.0f);
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const int64_t xs = x.stride(0), ys = y.stride(0);
    at::parallel_for(0, m, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(n, 1)),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t row = begin; row < end; ++row) {
                         layer_norm_row(xp + row * xs, yp + row * ys, data_or_null(w), data_or_null(b),
                                        static_cast<float>(eps), n);
                       }
                     });
  });
  return y;
}

at::Tensor layer_norm_channels_first(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                     double eps) {
  require_value(x.device().is_cpu() && x.dim() == 3 && x.is_contiguous() && x.size(1) > 0,
                [] { return std::string("x: expected a contiguous (B, C, S) CPU tensor with C > 0"); });
  const int64_t nb = x.size(0), c = x.size(1), s = x.size(2);
  at::Tensor y = at::empty({nb, c, s}, x.options());
  const std::vector<float> w = float_param("weight", weight, c, 0.0f);
  const std::vector<float> b = float_param("bias", bias, c, 0.0f);
  const int64_t per_image = (s + kBlock - 1) / kBlock;  // blocks of positions, the last maybe partial
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, nb * per_image, std::max<int64_t>(1, kParallelGrain / (c * kBlock)),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t t = begin; t < end; ++t) {
                         const int64_t image = t / per_image, pos = (t % per_image) * kBlock;
                         const int64_t at = image * c * s + pos, count = std::min<int64_t>(kBlock, s - pos);
                         const float e = static_cast<float>(eps);
                         if (count == kBlock) {
                           channels_block<true>(xp + at, yp + at, w.data(), b.data(), e, c, s, count);
                         } else if (count >= kScalarTail) {
                           channels_block<false>(xp + at, yp + at, w.data(), b.data(), e, c, s, count);
                         } else {
                           for (int64_t i = 0; i < count; ++i) {
                             channels_one(xp + at + i, yp + at + i, w.data(), b.data(), e, c, s);
                           }
                         }
                       }
                     });
  });
  return y;
}

}  // namespace normswitch_cpu
