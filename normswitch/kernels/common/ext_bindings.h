// pybind11 bindings of normswitch's C++ extensions: `guarded` makes a kernel's errors reach Python
// through pybind11's own translation (see ext_errors.h).
#pragma once

#include <torch/extension.h>

#include <stdexcept>
#include <utility>

#include "ext_errors.h"

namespace normswitch_ext {

// A binding of kernel f whose errors reach Python as ext_errors.h describes; torch's own errors (c10::Error,
// formatted inside libc10) become RuntimeError without C++ backtraces.
template <typename R, typename... A>
auto guarded(R (*f)(A...)) {
  return [f](A... a) -> R {
    try {
      return f(std::forward<A>(a)...);
    } catch (const TypeError& e) {
      throw pybind11::type_error(e.what());
    } catch (const c10::Error& e) {
      throw std::runtime_error(e.what_without_backtrace());
    }
  };
}

}  // namespace normswitch_ext
