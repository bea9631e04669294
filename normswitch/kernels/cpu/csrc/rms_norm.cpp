// RMSNorm and fused residual-add RMSNorm on CPU, one pass per row: the statistics, then the
// output from the row while it is in cache. Rows are split across torch's intra-op threads;
// each row is computed by one thread in a fixed order, so a row's result does not depend on
// the other rows. Rounding points follow normswitch/fallbacks/rms_norm.py (HF order). Where the
// CPU has AVX-512 (and AVX512_BF16 for bfloat16) the rows go to rms_norm_avx512.cpp instead.
#include "norms.h"
#include "simd_rows.h"

#include <ATen/Parallel.h>

namespace normswitch_cpu {
namespace {

template <typename T>
float sum_squares(const T* x, int64_t n) {
  fVec s0(0.0f), s1(0.0f);
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    fVec a, b;
    load(x + i, a, b);
    s0 = s0 + a * a;
    s1 = s1 + b * b;
  }
  float s = hsum(s0 + s1);
  for (; i < n; ++i) {
    const float v = static_cast<float>(x[i]);
    s += v * v;
  }
  return s;
}

// y = round(round(x * rstd) * w) with w = weight + offset in float32 (no weight: round(x * rstd)).
template <typename T>
void scale_row(const T* x, T* y, const float* w, float rstd, int64_t n) {
  const fVec r(rstd);
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    fVec a, b;
    load(x + i, a, b);
    a = a * r;
    b = b * r;
    if (w != nullptr) {
      round_to<T>(a, b);
      a = a * fVec::loadu(w + i);
      b = b * fVec::loadu(w + i + fVec::size());
    }
    store(y + i, a, b);
  }
  for (; i < n; ++i) {
    float v = static_cast<float>(x[i]) * rstd;
    if (w != nullptr) {
      v = round_to<T>(v) * w[i];
    }
    y[i] = static_cast<T>(v);
  }
}

inline float inv_rms(float sum_sq, int64_t n, float eps) {
  return 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
}

// r = round(x + residual) stored into r; returns the sum of squares of the rounded r.
template <typename T>
float add_row(const T* x, const T* residual, T* r, int64_t n) {
  fVec s0(0.0f), s1(0.0f);
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    fVec a, b, c, d;
    load(x + i, a, b);
    load(residual + i, c, d);
    a = a + c;
    b = b + d;
    round_to<T>(a, b);
    store(r + i, a, b);
    s0 = s0 + a * a;
    s1 = s1 + b * b;
  }
  float s = hsum(s0 + s1);
  for (; i < n; ++i) {
    const float v = round_to<T>(static_cast<float>(x[i]) + static_cast<float>(residual[i]));
    r[i] = static_cast<T>(v);
    s += v * v;
  }
  return s;
}

// Outputs of at least this many bytes are written around the caches (about half of this
// machine class's L3): they would not stay there, and streaming skips reading the old lines.
constexpr int64_t kStreamBytes = int64_t{16} << 20;

int64_t grain(int64_t n) {
  return std::max<int64_t>(1, kParallelGrain / n);
}

avx512::DType simd_type(at::ScalarType t) {
  return t == at::kFloat ? avx512::DType::F32 : t == at::kBFloat16 ? avx512::DType::BF16 : avx512::DType::F16;
}

// The weight as the AVX-512 kernels read it: float32 with the offset added. A float32 weight
// without offset is read where it is; float32/bfloat16/float16 ones are converted by vector code
// into a buffer of the calling thread (kept between calls: no allocation per call, which at
// M = 1 costs as much as the row), others by float_param into `copy`. Null without a weight.
const float* simd_weight(const std::optional<at::Tensor>& p, int64_t n, float offset, std::vector<float>& copy) {
  const auto t = p.has_value() ? p->scalar_type() : at::kFloat;
  if (!p.has_value() || !(t == at::kFloat || t == at::kBFloat16 || t == at::kHalf)) {
    copy = float_param("weight", p, n, offset);
    return data_or_null(copy);
  }
  require_value(p->device().is_cpu() && p->dim() == 1 && p->size(0) == n && p->is_contiguous(), [&] {
    return "weight: expected a contiguous (" + std::to_string(n) + ",) CPU tensor, got shape " + shape_str(p->sizes());
  });
  if (t == at::kFloat && offset == 0.0f) {
    return p->const_data_ptr<float>();
  }
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) {
    buffer.resize(n);
  }
  avx512::weight_f32(simd_type(t), p->const_data_ptr(), offset, buffer.data(), n);
  return buffer.data();
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const std::optional<at::Tensor>& weight, double eps,
                    double offset, const std::optional<at::Tensor>& out) {
  check_rows("x", x);
  const int64_t m = x.size(0), n = x.size(1);
  at::Tensor y = out.has_value() ? *out : at::empty({m, n}, x.options());
  check_rows_like("out", y, x);
  if (avx512::usable(simd_type(x.scalar_type()))) {
    std::vector<float> copy;
    const float* w = simd_weight(weight, n, static_cast<float>(offset), copy);
    const void* xp = x.const_data_ptr();
    void* yp = y.mutable_data_ptr();
    const bool stream = m * n * static_cast<int64_t>(y.element_size()) >= kStreamBytes && !y.is_same(x);
    at::parallel_for(0, m, grain(n), [&](int64_t begin, int64_t end) {
      avx512::rms_rows(simd_type(x.scalar_type()), xp, x.stride(0), yp, y.stride(0), w, static_cast<float>(eps),
                       n, begin, end, stream);
    });
    return y;
  }
  const std::vector<float> w = float_param("weight", weight, n, static_cast<float>(offset));
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const int64_t xs = x.stride(0), ys = y.stride(0);
    const float* wp = data_or_null(w);
    at::parallel_for(0, m, grain(n), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const scalar_t* xr = xp + row * xs;
        scale_row(xr, yp + row * ys, wp, inv_rms(sum_squares(xr, n), n, static_cast<float>(eps)), n);
      }
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                                                      const at::Tensor& weight, double eps, double offset,
                                                      bool inplace) {
  check_rows("x", x);
  check_rows_like("residual", residual, x);
  const int64_t m = x.size(0), n = x.size(1);
  at::Tensor y = inplace ? x : at::empty({m, n}, x.options());
  at::Tensor r = inplace ? residual : at::empty({m, n}, residual.options());
  if (avx512::usable(simd_type(x.scalar_type()))) {
    std::vector<float> copy;
    const float* w = simd_weight(weight, n, static_cast<float>(offset), copy);
    const void* xp = x.const_data_ptr();
    const void* rp = residual.const_data_ptr();
    void* yp = y.mutable_data_ptr();
    void* op = r.mutable_data_ptr();
    at::parallel_for(0, m, grain(n), [&](int64_t begin, int64_t end) {
      avx512::add_rms_rows(simd_type(x.scalar_type()), xp, x.stride(0), rp, residual.stride(0), op, r.stride(0), yp,
                           y.stride(0), w, static_cast<float>(eps), n, begin, end);
    });
    return {y, r};
  }
  const std::vector<float> w = float_param("weight", weight, n, static_cast<float>(offset));
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* rp = residual.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    scalar_t* op = r.mutable_data_ptr<scalar_t>();
    const int64_t xs = x.stride(0), rs = residual.stride(0), ys = y.stride(0), os = r.stride(0);
    const float* wp = data_or_null(w);
    at::parallel_for(0, m, grain(n), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        scalar_t* sum = op + row * os;
        const float ss = add_row(xp + row * xs, rp + row * rs, sum, n);
        scale_row<scalar_t>(sum, yp + row * ys, wp, inv_rms(ss, n, static_cast<float>(eps)), n);
      }
    });
  });
  return {y, r};
}

}  // namespace normswitch_cpu
