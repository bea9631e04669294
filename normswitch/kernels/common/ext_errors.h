// Errors of normswitch's C++ extensions (cpu and cuda), for their bindings and argument checks.
//
// Messages are built with std::string, never with iostreams (TORCH_CHECK's c10::str): iostream
// code compiled by a newer GCC than the libstdc++ already loaded in the process can crash. Errors
// are thrown as standard exceptions that pybind11 translates itself, whatever translators the
// running torch registered:
// std::invalid_argument -> ValueError, normswitch_ext::TypeError -> TypeError (in `guarded`),
// std::runtime_error -> RuntimeError. `guarded` (ext_bindings.h) wraps the bound functions.
#pragma once

#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace normswitch_ext {

struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline std::string shape_str(c10::IntArrayRef sizes) {
  std::string s = "(";
  for (size_t i = 0; i < sizes.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(sizes[i]);
  }
  return s + (sizes.size() == 1 ? ",)" : ")");
}

inline void require_value(bool ok, const std::string& message) {
  if (!ok) {
    throw std::invalid_argument(message);
  }
}

inline void require_type(bool ok, const std::string& message) {
  if (!ok) {
    throw TypeError(message);
  }
}

inline void require(bool ok, const std::string& message) {
  if (!ok) {
    throw std::runtime_error(message);
  }
}

}  // namespace normswitch_ext
