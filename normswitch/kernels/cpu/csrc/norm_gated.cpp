// Gated group LayerNorm/RMSNorm on CPU (the layernorm_gated _layer_norm_fwd contract), one pass
// per row: the row (gated by silu(z) first when !norm_before_gate) goes to a float32 buffer of the
// thread, then each group's statistics and output come from it while it is in cache. Rounding
// points follow normswitch/fallbacks/norm_gated.py: everything in float32, one rounding at the end.
#include "norms.h"

#include <ATen/Parallel.h>

namespace normswitch_cpu {
namespace {

struct GatedArgs {
  int64_t m, n, group;
  float eps;
  bool before, rms;
  const float* w;
  const float* b;  // null without bias
};

// buf = x, or x * silu(z) when the gate comes first.
template <typename T>
void load_row(const T* x, const T* z, float* buf, int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    fVec a, b;
    load(x + i, a, b);
    if (z != nullptr) {
      fVec c, d;
      load(z + i, c, d);
      a = a * silu(c);
      b = b * silu(d);
    }
    a.store(buf + i);
    b.store(buf + i + fVec::size());
  }
  for (; i < n; ++i) {
    const float v = static_cast<float>(x[i]);
    buf[i] = z == nullptr ? v : v * silu(static_cast<float>(z[i]));
  }
}

// (mean, rstd) of buf[0, n): mean 0 for RMS; centred variance for LayerNorm.
std::pair<float, float> stats(const float* buf, int64_t n, bool rms, float eps) {
  float mean = 0.0f;
  if (!rms) {
    fVec s(0.0f);
    int64_t i = 0;
    for (; i + fVec::size() <= n; i += fVec::size()) {
      s = s + fVec::loadu(buf + i);
    }
    float sum = hsum(s);
    for (; i < n; ++i) {
      sum += buf[i];
    }
    mean = sum / static_cast<float>(n);
  }
  const fVec mu(mean);
  fVec s(0.0f);
  int64_t i = 0;
  for (; i + fVec::size() <= n; i += fVec::size()) {
    const fVec d = fVec::loadu(buf + i) - mu;
    s = s + d * d;
  }
  float sq = hsum(s);
  for (; i < n; ++i) {
    const float d = buf[i] - mean;
    sq += d * d;
  }
  return {mean, 1.0f / std::sqrt(sq / static_cast<float>(n) + eps)};
}

// y = ((buf - mean) * rstd) * w (+ b), times silu(z) when the gate comes after; rounded to T.
template <typename T>
void write_group(const float* buf, const T* z, T* y, const float* w, const float* b, float mean,
                 float rstd, int64_t n) {
  const fVec mu(mean), r(rstd);
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    const int64_t j = i + fVec::size();
    fVec p = (fVec::loadu(buf + i) - mu) * r * fVec::loadu(w + i);
    fVec q = (fVec::loadu(buf + j) - mu) * r * fVec::loadu(w + j);
    if (b != nullptr) {
      p = p + fVec::loadu(b + i);
      q = q + fVec::loadu(b + j);
    }
    if (z != nullptr) {
      fVec c, d;
      load(z + i, c, d);
      p = p * silu(c);
      q = q * silu(d);
    }
    store(y + i, p, q);
  }
  for (; i < n; ++i) {
    float v = (buf[i] - mean) * rstd * w[i];
    if (b != nullptr) {
      v += b[i];
    }
    if (z != nullptr) {
      v *= silu(static_cast<float>(z[i]));
    }
    y[i] = static_cast<T>(v);
  }
}

template <typename T>
void gated_rows(const GatedArgs& a, const T* x, int64_t xs, const T* z, int64_t zs, T* y, int64_t ys,
                float* mean_out, float* rstd_out, int64_t begin, int64_t end) {
  std::vector<float> buf(a.n);
  const int64_t groups = a.n / a.group;
  for (int64_t row = begin; row < end; ++row) {
    const T* zr = z == nullptr ? nullptr : z + row * zs;
    load_row(x + row * xs, a.before ? nullptr : zr, buf.data(), a.n);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c = g * a.group;
      const auto [mean, rstd] = stats(buf.data() + c, a.group, a.rms, a.eps);
      write_group(buf.data() + c, a.before && zr != nullptr ? zr + c : nullptr, y + row * ys + c, a.w + c,
                  a.b == nullptr ? nullptr : a.b + c, mean, rstd, a.group);
      if (mean_out != nullptr) {
        mean_out[g * a.m + row] = mean;
      }
      rstd_out[g * a.m + row] = rstd;
    }
  }
}

}  // namespace

std::tuple<at::Tensor, std::optional<at::Tensor>, at::Tensor> norm_gated(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& z, double eps, int64_t group_size, bool norm_before_gate,
    bool is_rms_norm, const std::optional<at::Tensor>& out) {
  check_rows("x", x);
  const int64_t m = x.size(0), n = x.size(1);
  require_value(group_size > 0 && n % group_size == 0, [&] {
    return "group_size: expected a positive divisor of " + std::to_string(n) + ", got " + std::to_string(group_size);
  });
  if (z.has_value()) {
    check_rows_like("z", *z, x);
  }
  at::Tensor y = out.has_value() ? *out : at::empty({m, n}, x.options());
  check_rows_like("out", y, x);
  const std::vector<float> w = float_param("weight", weight, n, 0.0f);
  const std::vector<float> b = float_param("bias", bias, n, 0.0f);
  const int64_t stats_len = m * (n / group_size);
  at::Tensor rstd = at::empty({stats_len}, x.options().dtype(at::kFloat));
  std::optional<at::Tensor> mean;
  if (!is_rms_norm) {
    mean = at::empty({stats_len}, x.options().dtype(at::kFloat));
  }
  const GatedArgs args{m, n, group_size, static_cast<float>(eps), norm_before_gate, is_rms_norm, w.data(),
                       data_or_null(b)};
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* zp = z.has_value() ? z->const_data_ptr<scalar_t>() : nullptr;
    const int64_t zs = z.has_value() ? z->stride(0) : 0;
    float* mp = mean.has_value() ? mean->mutable_data_ptr<float>() : nullptr;
    at::parallel_for(0, m, std::max<int64_t>(1, kParallelGrain / n), [&](int64_t begin, int64_t end) {
      gated_rows(args, x.const_data_ptr<scalar_t>(), x.stride(0), zp, zs, y.mutable_data_ptr<scalar_t>(),
                 y.stride(0), mp, rstd.mutable_data_ptr<float>(), begin, end);
    });
  });
  return {y, mean, rstd};
}

}  // namespace normswitch_cpu
