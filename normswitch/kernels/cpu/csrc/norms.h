// Shared declarations of the CPU kernels: argument checks, float32 parameters, the ops.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "vec_io.h"

namespace normswitch_cpu {

// Rows per task: about this many elements, so tiny inputs stay on the calling thread.
constexpr int64_t kParallelGrain = 16384;

// x: a 2-D CPU tensor of float32/bfloat16/float16 with unit stride along N.
inline void check_rows(const char* name, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.device().is_cpu() && x.dim() == 2 && (x.stride(1) == 1 || x.size(1) == 1),
                    name, ": expected a 2-D CPU tensor with unit stride along the last dim");
  const auto t = x.scalar_type();
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kBFloat16 || t == at::kHalf, name,
                   ": expected float32, bfloat16 or float16, got ", t);
}

inline void check_rows_like(const char* name, const at::Tensor& t, const at::Tensor& x) {
  check_rows(name, t);
  TORCH_CHECK_VALUE(t.sizes() == x.sizes(), name, ": expected shape ", x.sizes(), ", got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), name, ": expected dtype ", x.scalar_type(), ", got ",
                   t.scalar_type());
}

// A (N,) parameter of any float dtype read as float32, plus an offset; empty when absent.
inline std::vector<float> float_param(const char* name, const std::optional<at::Tensor>& p, int64_t n,
                                      float offset) {
  std::vector<float> out;
  if (!p.has_value()) {
    return out;
  }
  const at::Tensor& t = *p;
  TORCH_CHECK_VALUE(t.device().is_cpu() && t.dim() == 1 && t.size(0) == n && t.is_contiguous(), name,
                    ": expected a contiguous (", n, ",) CPU tensor, got shape ", t.sizes());
  out.resize(n);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, t.scalar_type(), "normswitch_cpu_param", [&] {
    const scalar_t* src = t.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) {
      out[i] = static_cast<float>(src[i]) + offset;
    }
  });
  return out;
}

// Calls f(T{}) with T the C++ type of a float32, bfloat16 or float16 dtype.
template <typename F>
inline void dispatch_float(at::ScalarType t, F&& f) {
  switch (t) {
    case at::kFloat:
      return f(float{});
    case at::kBFloat16:
      return f(c10::BFloat16{});
    case at::kHalf:
      return f(c10::Half{});
    default:
      TORCH_CHECK_TYPE(false, "x: expected float32, bfloat16 or float16, got ", t);
  }
}

inline const float* data_or_null(const std::vector<float>& v) {
  return v.empty() ? nullptr : v.data();
}

at::Tensor rms_norm(const at::Tensor& x, const std::optional<at::Tensor>& weight, double eps,
                    double offset, const std::optional<at::Tensor>& out);

std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                                                      const at::Tensor& weight, double eps, double offset,
                                                      bool inplace);

std::tuple<at::Tensor, std::optional<at::Tensor>, at::Tensor> norm_gated(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& z, double eps, int64_t group_size, bool norm_before_gate,
    bool is_rms_norm, const std::optional<at::Tensor>& out);

}  // namespace normswitch_cpu
