// Gated group LayerNorm/RMSNorm on CPU (the layernorm_gated _layer_norm_fwd contract), one pass
// per row: the row (gated by silu(z) first when !norm_before_gate) goes to a float32 buffer of the
// thread, then each group's statistics and output come from it while it is in cache. Without a
// gate first the row is read where it is (16-bit values converted exactly on each read), which
// saves writing and reading the buffer. Rounding points follow normswitch/fallbacks/norm_gated.py:
// everything in float32, one rounding at the end.
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

// Sum of v(src[i]) over [0, n) in float32, v applied to the values as read (exact conversion of
// a 16-bit S): vectors of float32 (16 at a time) or blocks of a 16-bit type (32), then the tail
// one value at a time. v takes and returns an fVec or a float.
template <typename S, typename V>
float sum_of(const S* src, int64_t n, V v) {
  fVec s(0.0f);
  int64_t i = 0;
  if constexpr (std::is_same_v<S, float>) {
    for (; i + fVec::size() <= n; i += fVec::size()) {
      s = s + v(fVec::loadu(src + i));
    }
  } else {
    for (; i + kBlock <= n; i += kBlock) {
      fVec a, b;
      load(src + i, a, b);
      s = s + v(a);
      s = s + v(b);
    }
  }
  float sum = hsum(s);
  for (; i < n; ++i) {
    sum += v(static_cast<float>(src[i]));
  }
  return sum;
}

// (mean, rstd) of src[0, n): mean 0 for RMS; centred variance for LayerNorm.
template <typename S>
std::pair<float, float> stats(const S* src, int64_t n, bool rms, float eps) {
  const float mean = rms ? 0.0f : sum_of(src, n, [](auto a) { return a; }) / static_cast<float>(n);
  const float sq = sum_of(src, n, [&](auto a) {
    using A = decltype(a);
    const A d = a - A(mean);
    return d * d;
  });
  return {mean, 1.0f / std::sqrt(sq / static_cast<float>(n) + eps)};
}

// y = ((src - mean) * rstd) * w (+ b), times silu(z) when the gate comes after; rounded to T.
template <typename S, typename T>
void write_group(const S* src, const T* z, T* y, const float* w, const float* b, float mean,
                 float rstd, int64_t n) {
  const fVec mu(mean), r(rstd);
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    const int64_t j = i + fVec::size();
    fVec p, q;
    load(src + i, p, q);
    p = (p - mu) * r * fVec::loadu(w + i);
    q = (q - mu) * r * fVec::loadu(w + j);
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
    float v = (static_cast<float>(src[i]) - mean) * rstd * w[i];
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
    // Each group's statistics and output from src: the row itself, or (gate first) x * silu(z)
    // in the thread's float32 buffer.
    auto each_group = [&](const auto* src) {
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t c = g * a.group;
        const auto [mean, rstd] = stats(src + c, a.group, a.rms, a.eps);
        write_group(src + c, a.before && zr != nullptr ? zr + c : nullptr, y + row * ys + c, a.w + c,
                    a.b == nullptr ? nullptr : a.b + c, mean, rstd, a.group);
        if (mean_out != nullptr) {
          mean_out[g * a.m + row] = mean;
        }
        rstd_out[g * a.m + row] = rstd;
      }
    };
    if (a.before || zr == nullptr) {
      each_group(x + row * xs);
    } else {
      load_row(x + row * xs, zr, buf.data(), a.n);
      each_group(static_cast<const float*>(buf.data()));
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
