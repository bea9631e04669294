// Python bindings of the CPU kernels (the kernel contracts declared in normswitch/ops/).
#include "ext_bindings.h"
#include "norms.h"
#include "simd_rows.h"

using normswitch_ext::guarded;

namespace normswitch_ext {
PyObject* make_fast_key();  // common/fast_key.cpp
}  // namespace normswitch_ext

namespace normswitch_cpu {
void add_raw_calls(PyObject* module);  // raw_calls.cpp: rms_norm, fused_add_rms_norm
}  // namespace normswitch_cpu

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "normswitch CPU kernels: RMSNorm, fused add RMSNorm, LayerNorm, gated group norm";
  normswitch_cpu::add_raw_calls(m.ptr());
  m.def("norm_gated", guarded(&normswitch_cpu::norm_gated), "gated group LayerNorm/RMSNorm: (y, mean, rstd)",
        py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("z"), py::arg("eps"), py::arg("group_size"),
        py::arg("norm_before_gate"), py::arg("is_rms_norm"), py::arg("out"));
  m.def("layer_norm", guarded(&normswitch_cpu::layer_norm), "LayerNorm of (M, N) x in float32, rounded once",
        py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps"), py::arg("out"));
  m.def("layer_norm_channels_first", guarded(&normswitch_cpu::layer_norm_channels_first),
        "LayerNorm over C of contiguous (B, C, S) x in float32, rounded once", py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("eps"));
  m.add_object("fast_key", py::reinterpret_steal<py::object>(normswitch_ext::make_fast_key()));
  m.def("kernel_path", &normswitch_cpu::avx512::path_name,
        "the RMSNorm row kernels in use: avx512-bf16, avx512 (bfloat16 portable) or portable");
  m.def("set_portable", &normswitch_cpu::avx512::set_path, "True: the portable RMSNorm kernels serve every call",
        py::arg("portable"));
}
