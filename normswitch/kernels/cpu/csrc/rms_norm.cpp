// RMSNorm and fused residual-add RMSNorm on CPU, one pass per row: the statistics, then the
// output from the row while it is in cache. Rows are split across torch's intra-op threads;
// each row is computed by one thread in a fixed order, so a row's result does not depend on
// the other rows. Rounding points follow normswitch/fallbacks/rms_norm.py (HF order).
#include "norms.h"

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

int64_t grain(int64_t n) {
  return std::max<int64_t>(1, kParallelGrain / n);
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const std::optional<at::Tensor>& weight, double eps,
                    double offset, const std::optional<at::Tensor>& out) {
  check_rows("x", x);
  const int64_t m = x.size(0), n = x.size(1);
  at::Tensor y = out.has_value() ? *out : at::empty({m, n}, x.options());
  check_rows_like("out", y, x);
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
