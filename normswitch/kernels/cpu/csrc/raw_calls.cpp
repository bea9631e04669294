// rms_norm and fused_add_rms_norm bound as METH_FASTCALL functions instead of through pybind11:
// pybind11's call (argument casters, overload records, the result tuple of new wrappers) costs
// about 0.6 us, as much as the kernel at M = 1. Same positional signatures and errors as the
// pybind11 bindings (ext_errors.h): ValueError, TypeError, RuntimeError. The in-place fused add
// returns its two argument objects themselves.
#include <torch/extension.h>

#include <stdexcept>
#include <string>

#include "norms.h"

namespace normswitch_cpu {
namespace {

// A tensor argument (null with TypeError set when `o` is none; `optional`: None gives `none`).
bool tensor_arg(PyObject* o, const char* name, bool optional, std::optional<at::Tensor>& out) {
  if (optional && o == Py_None) {
    out.reset();
    return true;
  }
  if (!THPVariable_Check(o)) {
    PyErr_Format(PyExc_TypeError, "%s: expected a tensor%s, got %s", name, optional ? " or None" : "",
                 Py_TYPE(o)->tp_name);
    return false;
  }
  out = THPVariable_Unpack(o);
  return true;
}

bool double_arg(PyObject* o, const char* name, double& out) {
  out = PyFloat_AsDouble(o);
  if (out == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "%s: expected a float, got %s", name, Py_TYPE(o)->tp_name);
    return false;
  }
  return true;
}

bool arity(const char* name, Py_ssize_t nargs, Py_ssize_t want) {
  if (nargs != want) {
    PyErr_Format(PyExc_TypeError, "%s: expected %zd positional arguments, got %zd", name, want, nargs);
    return false;
  }
  return true;
}

// Runs f, turning the kernels' exceptions into Python's (null result).
template <typename F>
PyObject* translated(F&& f) {
  try {
    return f();
  } catch (const normswitch_ext::TypeError& e) {
    PyErr_SetString(PyExc_TypeError, e.what());
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

// rms_norm(x, weight, eps, weight_offset, out) -> y
PyObject* raw_rms_norm(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  std::optional<at::Tensor> x, weight, out;
  double eps = 0.0, offset = 0.0;
  if (!arity("rms_norm", nargs, 5) || !tensor_arg(args[0], "x", false, x) ||
      !tensor_arg(args[1], "weight", true, weight) || !double_arg(args[2], "eps", eps) ||
      !double_arg(args[3], "weight_offset", offset) || !tensor_arg(args[4], "out", true, out)) {
    return nullptr;
  }
  return translated([&]() -> PyObject* {
    at::Tensor y = rms_norm(*x, weight, eps, offset, out);
    if (out.has_value() && y.is_same(*out)) {
      Py_INCREF(args[4]);
      return args[4];
    }
    return THPVariable_Wrap(std::move(y));
  });
}

// fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace) -> (y, r)
PyObject* raw_fused_add_rms_norm(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  std::optional<at::Tensor> x, residual, weight;
  double eps = 0.0, offset = 0.0;
  if (!arity("fused_add_rms_norm", nargs, 6) || !tensor_arg(args[0], "x", false, x) ||
      !tensor_arg(args[1], "residual", false, residual) || !tensor_arg(args[2], "weight", false, weight) ||
      !double_arg(args[3], "eps", eps) || !double_arg(args[4], "weight_offset", offset)) {
    return nullptr;
  }
  const int inplace = PyObject_IsTrue(args[5]);
  if (inplace < 0) {
    return nullptr;
  }
  return translated([&]() -> PyObject* {
    auto [y, r] = fused_add_rms_norm(*x, *residual, *weight, eps, offset, inplace == 1);
    if (inplace == 1) {
      return PyTuple_Pack(2, args[0], args[1]);
    }
    PyObject* py = THPVariable_Wrap(std::move(y));
    PyObject* pr = py == nullptr ? nullptr : THPVariable_Wrap(std::move(r));
    if (pr == nullptr) {
      Py_XDECREF(py);
      return nullptr;
    }
    PyObject* pair = PyTuple_Pack(2, py, pr);
    Py_DECREF(py);
    Py_DECREF(pr);
    return pair;
  });
}

PyMethodDef raw_defs[] = {
    {"rms_norm", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(raw_rms_norm)), METH_FASTCALL,
     "rms_norm(x, weight, eps, weight_offset, out): RMSNorm of (M, N) x"},
    {"fused_add_rms_norm", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(raw_fused_add_rms_norm)),
     METH_FASTCALL, "fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace): r = x + residual; "
     "(rms_norm(r), r)"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

void add_raw_calls(PyObject* module) {
  if (PyModule_AddFunctions(module, raw_defs) < 0) {
    throw pybind11::error_already_set();
  }
}

}  // namespace normswitch_cpu
