// Python bindings of the CPU kernels (the kernel contract of normswitch.backend).
#include <torch/extension.h>

#include <stdexcept>
#include <utility>

#include "norms.h"

namespace {

// Wraps a kernel so that its errors reach Python through pybind11's own translation, whatever
// translators the running torch registered: std::invalid_argument as ValueError, TypeError as
// TypeError, torch's errors as RuntimeError without C++ backtraces.
template <typename R, typename... A>
auto guarded(R (*f)(A...)) {
  return [f](A... a) -> R {
    try {
      return f(std::forward<A>(a)...);
    } catch (const normswitch_cpu::TypeError& e) {
      throw py::type_error(e.what());
    } catch (const c10::Error& e) {
      throw std::runtime_error(e.what_without_backtrace());
    }
  };
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "normswitch CPU kernels: RMSNorm, fused add RMSNorm, gated group norm";
  m.def("rms_norm", guarded(&normswitch_cpu::rms_norm), "RMSNorm of (M, N) x", py::arg("x"), py::arg("weight"),
        py::arg("eps"), py::arg("weight_offset"), py::arg("out"));
  m.def("fused_add_rms_norm", guarded(&normswitch_cpu::fused_add_rms_norm), "r = x + residual; (rms_norm(r), r)",
        py::arg("x"), py::arg("residual"), py::arg("weight"), py::arg("eps"), py::arg("weight_offset"),
        py::arg("inplace"));
  m.def("norm_gated", guarded(&normswitch_cpu::norm_gated), "gated group LayerNorm/RMSNorm: (y, mean, rstd)",
        py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("z"), py::arg("eps"), py::arg("group_size"),
        py::arg("norm_before_gate"), py::arg("is_rms_norm"), py::arg("out"));
}
