// Shared declarations of the CPU kernels: argument checks, float32 parameters, the ops.
#pragma once

#include <c10/core/ScalarType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "ext_errors.h"
#include "vec_io.h"

namespace normswitch_cpu {

// Rows per task: about this many elements, so tiny inputs stay on the calling thread.
constexpr int64_t kParallelGrain = 16384;

using normswitch_ext::shape_str;
using normswitch_ext::TypeError;

// Checks whose message is built only when they fail: building it on every call (strings,
// allocations) costs more than the row itself at M = 1.
template <typename Message>
inline void require_value(bool ok, Message&& message) {
  if (!ok) {
    throw std::invalid_argument(message());
  }
}

template <typename Message>
inline void require_type(bool ok, Message&& message) {
  if (!ok) {
    throw TypeError(message());
  }
}

// x: a 2-D CPU tensor of float32/bfloat16/float16 with unit stride along N.
inline void check_rows(const char* name, const at::Tensor& x) {
  require_value(x.device().is_cpu() && x.dim() == 2 && (x.stride(1) == 1 || x.size(1) == 1),
                [&] { return std::string(name) + ": expected a 2-D CPU tensor with unit stride along the last dim"; });
  const auto t = x.scalar_type();
  require_type(t == at::kFloat || t == at::kBFloat16 || t == at::kHalf,
               [&] { return std::string(name) + ": expected float32, bfloat16 or float16, got " + c10::toString(t); });
}

inline void check_rows_like(const char* name, const at::Tensor& t, const at::Tensor& x) {
  check_rows(name, t);
  require_value(t.sizes() == x.sizes(), [&] {
    return std::string(name) + ": expected shape " + shape_str(x.sizes()) + ", got " + shape_str(t.sizes());
  });
  require_type(t.scalar_type() == x.scalar_type(), [&] {
    return std::string(name) + ": expected dtype " + c10::toString(x.scalar_type()) + ", got " +
           c10::toString(t.scalar_type());
  });
}

// Calls f(T{}) with T the C++ type of a float32, bfloat16 or float16 dtype.
template <typename F>
inline void dispatch_float(at::ScalarType t, F&& f, const char* name = "x") {
  switch (t) {
    case at::kFloat:
      return f(float{});
    case at::kBFloat16:
      return f(c10::BFloat16{});
    case at::kHalf:
      return f(c10::Half{});
    default:
      throw TypeError(std::string(name) + ": expected float32, bfloat16 or float16, got " + c10::toString(t));
  }
}

// A (N,) parameter of any float dtype read as float32, plus an offset; empty when absent.
inline std::vector<float> float_param(const char* name, const std::optional<at::Tensor>& p, int64_t n,
                                      float offset) {
  std::vector<float> out;
  if (!p.has_value()) {
    return out;
  }
  const at::Tensor& t = *p;
  require_value(t.device().is_cpu() && t.dim() == 1 && t.size(0) == n && t.is_contiguous(), [&] {
    return std::string(name) + ": expected a contiguous (" + std::to_string(n) + ",) CPU tensor, got shape " +
           shape_str(t.sizes());
  });
  out.resize(n);
  const auto fill = [&](auto tag) {
    const auto* src = t.const_data_ptr<decltype(tag)>();
    for (int64_t i = 0; i < n; ++i) {
      out[i] = static_cast<float>(src[i]) + offset;
    }
  };
  if (t.scalar_type() == at::kDouble) {
    fill(double{});
  } else {
    dispatch_float(t.scalar_type(), fill, name);
  }
  return out;
}

inline const float* data_or_null(const std::vector<float>& v) {
  return v.empty() ? nullptr : v.data();
}

at::Tensor rms_norm(const at::Tensor& x, const std::optional<at::Tensor>& weight, double eps,
                    double offset, const std::optional<at::Tensor>& out);

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                                                      const at::Tensor& weight, double eps, double offset,
                                                      bool inplace);

at::Tensor layer_norm(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                      const std::optional<at::Tensor>& bias, double eps, const std::optional<at::Tensor>& out);

at::Tensor layer_norm_channels_first(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                     double eps);

std::tuple<at::Tensor, std::optional<at::Tensor>, at::Tensor> norm_gated(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& z, double eps, int64_t group_size, bool norm_before_gate,
    bool is_rms_norm, const std::optional<at::Tensor>& out);

}  // namespace normswitch_cpu
