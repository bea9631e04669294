// Torch bindings of the normswitch CUDA kernels. Inputs arrive already shaped and checked by
// normswitch/kernels/cuda/own.py (2-D, unit stride in the last dimension); this file only
// reads pointers, strides and dtypes, and launches on the current CUDA stream.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include "ext_bindings.h"
#include "launch.h"

namespace {

using normswitch::DType;
using OptTensor = c10::optional<at::Tensor>;
using normswitch_ext::require;
using normswitch_ext::require_value;

DType dtype_code(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return normswitch::kF32;
    case at::kHalf: return normswitch::kF16;
    case at::kBFloat16: return normswitch::kBF16;
    default:
      throw normswitch_ext::TypeError(std::string("normswitch cuda: unsupported dtype ") +
                                      c10::toString(t.scalar_type()));
  }
}

void check_2d(const at::Tensor& t, const at::Tensor& x, const char* name) {
  require_value(t.is_cuda() && t.get_device() == x.get_device(), std::string(name) + " must be on the device of x");
  require_value(t.dim() == 2 && t.size(0) == x.size(0) && t.size(1) == x.size(1) &&
                    (t.size(1) <= 1 || t.stride(1) == 1),
                std::string(name) + " must be (M, N) with unit stride in the last dimension");
}

void check_vec(const at::Tensor& t, int64_t n, const char* name) {
  require_value(t.is_cuda() && t.dim() == 1 && t.size(0) == n && t.is_contiguous(),
                std::string(name) + " must be a contiguous CUDA vector of size " + std::to_string(n));
}

// out = norm(x [+ residual]) over groups of `group` elements of each row; see launch.h.
void row_norm(const at::Tensor& x, const OptTensor& residual, const OptTensor& res_out,
              const OptTensor& weight, const OptTensor& bias, const OptTensor& z,
              at::Tensor& out, const OptTensor& mean, const OptTensor& rstd, int64_t group,
              double eps, double offset, bool rms, bool hf_round, bool gate_first) {
  require_value(x.is_cuda() && x.dim() == 2 && (x.size(1) <= 1 || x.stride(1) == 1),
                "x must be a 2-D CUDA tensor with unit stride in the last dimension");
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  normswitch::RowNormParams p;
  p.M = x.size(0);
  p.N = x.size(1);
  p.group = group;
  require_value(group > 0 && p.N % group == 0, "group size must divide N");
  p.x = x.data_ptr();
  p.x_stride = x.stride(0);
  p.dtype = dtype_code(x);
  check_2d(out, x, "out");
  require_value(out.scalar_type() == x.scalar_type(), "out must have the dtype of x");
  p.out = out.data_ptr();
  p.out_stride = out.stride(0);
  if (residual.has_value()) {
    require_value(res_out.has_value(), "residual needs res_out");
    check_2d(*residual, x, "residual");
    check_2d(*res_out, x, "res_out");
    require_value(res_out->scalar_type() == residual->scalar_type(), "res_out must have the dtype of residual");
    p.residual = residual->data_ptr();
    p.res_stride = residual->stride(0);
    p.res_out = res_out->data_ptr();
    p.res_out_stride = res_out->stride(0);
    p.res_dtype = dtype_code(*residual);
  }
  if (z.has_value()) {
    check_2d(*z, x, "z");
    require_value(z->scalar_type() == x.scalar_type(), "z must have the dtype of x");
    p.z = z->data_ptr();
    p.z_stride = z->stride(0);
  }
  if (weight.has_value()) {
    check_vec(*weight, p.N, "weight");
    p.weight = weight->data_ptr();
    p.w_dtype = dtype_code(*weight);
  }
  if (bias.has_value()) {
    check_vec(*bias, p.N, "bias");
    p.bias = bias->data_ptr();
    p.b_dtype = dtype_code(*bias);
  }
  const int64_t stats = p.M * (p.N / group);
  if (mean.has_value()) {
    check_vec(*mean, stats, "mean");
    require_value(mean->scalar_type() == at::kFloat, "mean must be float32");
    p.mean = mean->data_ptr<float>();
  }
  if (rstd.has_value()) {
    check_vec(*rstd, stats, "rstd");
    require_value(rstd->scalar_type() == at::kFloat, "rstd must be float32");
    p.rstd = rstd->data_ptr<float>();
  }
  p.eps = static_cast<float>(eps);
  p.offset = static_cast<float>(offset);
  p.rms = rms;
  p.hf_round = hf_round;
  p.gate_first = gate_first;
  const cudaError_t err = normswitch::launch_row_norm(p, c10::cuda::getCurrentCUDAStream());
  require(err == cudaSuccess, std::string("normswitch row_norm launch failed: ") + cudaGetErrorString(err));
}

// The launch plan for a row norm of x (for tests and `normswitch info`).
std::vector<int64_t> row_norm_plan(const at::Tensor& x, int64_t group) {
  normswitch::RowNormParams p;
  p.M = x.size(0);
  p.N = x.size(1);
  p.group = group;
  p.x = x.data_ptr();
  p.out = x.data_ptr();
  p.x_stride = x.stride(0);
  p.out_stride = x.stride(0);
  p.dtype = dtype_code(x);
  const normswitch::RowNormPlan pl = normswitch::plan_row_norm(p);
  return {pl.vec, pl.vpt, pl.threads_per_row, pl.rows_per_block};
}

// out = LayerNorm over dim 1 of the contiguous (B, C, S) tensor x.
void channels_first(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                    at::Tensor& out, double eps) {
  require_value(x.is_cuda() && x.dim() == 3 && x.is_contiguous(), "x must be contiguous (B, C, S)");
  require_value(out.sizes() == x.sizes() && out.is_contiguous() && out.scalar_type() == x.scalar_type(),
                "out must be contiguous, of the shape and dtype of x");
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  normswitch::ChannelsFirstParams p;
  p.B = x.size(0);
  p.C = x.size(1);
  p.S = x.size(2);
  check_vec(weight, p.C, "weight");
  check_vec(bias, p.C, "bias");
  p.x = x.data_ptr();
  p.out = out.data_ptr();
  p.weight = weight.data_ptr();
  p.bias = bias.data_ptr();
  p.dtype = dtype_code(x);
  p.w_dtype = dtype_code(weight);
  p.b_dtype = dtype_code(bias);
  p.eps = static_cast<float>(eps);
  const cudaError_t err = normswitch::launch_channels_first(p, c10::cuda::getCurrentCUDAStream());
  require(err == cudaSuccess, std::string("normswitch channels_first launch failed: ") + cudaGetErrorString(err));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("row_norm", normswitch_ext::guarded(&row_norm), "Row-wise RMS/Layer norm with residual, groups and gate");
  m.def("row_norm_plan", normswitch_ext::guarded(&row_norm_plan), "Launch plan (vec, vpt, threads_per_row, rows_per_block)");
  m.def("channels_first", normswitch_ext::guarded(&channels_first), "LayerNorm over dim 1 of (B, C, S)");
}
