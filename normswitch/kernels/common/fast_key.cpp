// The eager fast path's key in C++ (normswitch/_op.py builds the same key in Python; this one reads
// the tensors' metadata without a Python attribute access each, which at M = 1 costs more than the
// kernel). Installed for every op and device when the CPU kernels load. A raw METH_FASTCALL
// function: fast_key(spec, *args) returns the call's key (a tuple) or None when the call cannot take
// the fast path (then the full checks run). It is at least as strict as the Python key: anything
// unusual (a tensor subclass, symbolic sizes, a dispatch mode) gives None.
//
// spec = (name, kinds, uppers, flag, apart): the op's name; one kind per argument (0 x, 1 a tensor
// of x's shape or None, 2 a parameter or None, 3 a scalar, 4 an output that must be None); the
// row buckets' inclusive upper bounds; and the guard: when the scalar argument `flag` (-1: none) is
// true, the tensors at the indices `apart` must not share a byte (contiguous tensors: ranges).
#include <torch/extension.h>

#include <c10/core/GradMode.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>

#include <cstdint>

namespace normswitch_ext {
namespace {

enum Kind : long { kX = 0, kLike = 1, kParam = 2, kValue = 3, kOut = 4 };
constexpr Py_ssize_t kMaxParts = 96;

// The parts of a key under construction (new references), turned into a tuple at the end.
struct Parts {
  PyObject* item[kMaxParts];
  Py_ssize_t n = 0;
  bool full = false;

  ~Parts() {
    for (Py_ssize_t i = 0; i < n; ++i) {
      Py_DECREF(item[i]);
    }
  }
  void add(PyObject* o) {  // steals o
    if (o == nullptr || n == kMaxParts) {
      Py_XDECREF(o);
      full = true;
      return;
    }
    item[n++] = o;
  }
  void borrowed(PyObject* o) {
    Py_INCREF(o);
    add(o);
  }
  void integer(int64_t v) { add(PyLong_FromLongLong(v)); }
  void tensor_kind(const at::Tensor& t) {
    borrowed(reinterpret_cast<PyObject*>(torch::getTHPDtype(t.scalar_type())));
    integer(static_cast<int64_t>(t.device().type()));
    integer(t.device().index());
  }
  PyObject* tuple() {
    if (full) {
      Py_RETURN_NONE;
    }
    PyObject* key = PyTuple_New(n);
    if (key == nullptr) {
      return nullptr;
    }
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyTuple_SET_ITEM(key, i, item[i]);
    }
    n = 0;
    return key;
  }
};

bool is_plain_tensor(PyObject* o) { return Py_TYPE(o) == reinterpret_cast<PyTypeObject*>(THPVariableClass); }

bool is_value(PyObject* o) {
  return o == Py_None || PyFloat_CheckExact(o) || PyLong_CheckExact(o) || PyBool_Check(o);
}

// The key of one call, or None. Raises (returns null) only on a malformed spec.
PyObject* key_of(PyObject* spec, PyObject* const* args, Py_ssize_t nargs) {
  if (!PyTuple_CheckExact(spec) || PyTuple_GET_SIZE(spec) != 5) {
    PyErr_SetString(PyExc_TypeError, "fast_key: malformed spec");
    return nullptr;
  }
  PyObject* kinds = PyTuple_GET_ITEM(spec, 1);
  PyObject* uppers = PyTuple_GET_ITEM(spec, 2);
  const long flag = PyLong_AsLong(PyTuple_GET_ITEM(spec, 3));
  PyObject* apart = PyTuple_GET_ITEM(spec, 4);
  if (PyTuple_GET_SIZE(kinds) != nargs || nargs < 1 || flag >= nargs) {
    PyErr_SetString(PyExc_TypeError, "fast_key: arguments do not match the spec");
    return nullptr;
  }
  if (c10::impl::TorchDispatchModeTLS::stack_len() > 0 || !is_plain_tensor(args[0])) {
    Py_RETURN_NONE;
  }
  const bool grad = c10::GradMode::is_enabled();
  const at::Tensor& x = THPVariable_Unpack(args[0]);
  if (x.is_nested() || x.unsafeGetTensorImpl()->has_symbolic_sizes_strides() || x.dim() != 2 || x.size(0) == 0 ||
      !x.is_contiguous() || (grad && x.requires_grad())) {
    Py_RETURN_NONE;
  }
  const int64_t m = x.size(0);
  Parts key;
  key.borrowed(PyTuple_GET_ITEM(spec, 0));
  key.tensor_kind(x);
  key.integer(x.size(1));
  Py_ssize_t bucket = 0;
  const Py_ssize_t nb = PyTuple_GET_SIZE(uppers);
  while (bucket < nb && m > PyLong_AsLongLong(PyTuple_GET_ITEM(uppers, bucket))) {
    ++bucket;
  }
  key.integer(bucket);
  for (Py_ssize_t i = 1; i < nargs; ++i) {
    PyObject* a = args[i];
    const long kind = PyLong_AsLong(PyTuple_GET_ITEM(kinds, i));
    if (kind == kValue) {
      if (!is_value(a)) {
        Py_RETURN_NONE;
      }
      key.borrowed(reinterpret_cast<PyObject*>(Py_TYPE(a)));
      key.borrowed(a);
    } else if (kind == kOut) {
      if (a != Py_None) {
        Py_RETURN_NONE;
      }
    } else if (a == Py_None) {
      key.borrowed(Py_None);
    } else {
      const bool param = kind == kParam;
      if (!(is_plain_tensor(a) || (param && Py_TYPE(a) == reinterpret_cast<PyTypeObject*>(ParameterClass)))) {
        Py_RETURN_NONE;
      }
      const at::Tensor& t = THPVariable_Unpack(a);
      if (t.is_nested() || t.unsafeGetTensorImpl()->has_symbolic_sizes_strides() || !t.is_contiguous() ||
          (grad && t.requires_grad()) || (!param && t.sizes() != x.sizes())) {
        Py_RETURN_NONE;
      }
      if (param) {
        key.borrowed(reinterpret_cast<PyObject*>(Py_TYPE(a)));
      }
      key.tensor_kind(t);
      if (param) {
        key.integer(t.dim());
        for (const int64_t s : t.sizes()) {
          key.integer(s);
        }
      }
    }
  }
  if (flag >= 0 && PyObject_IsTrue(args[flag]) == 1) {
    const Py_ssize_t na = PyTuple_GET_SIZE(apart);
    for (Py_ssize_t i = 0; i < na; ++i) {
      PyObject* a = args[PyLong_AsLong(PyTuple_GET_ITEM(apart, i))];
      for (Py_ssize_t j = i + 1; j < na && a != Py_None; ++j) {
        PyObject* b = args[PyLong_AsLong(PyTuple_GET_ITEM(apart, j))];
        if (b == Py_None) {
          continue;
        }
        const at::Tensor& s = THPVariable_Unpack(a);
        const at::Tensor& t = THPVariable_Unpack(b);
        const auto ps = reinterpret_cast<uintptr_t>(s.const_data_ptr());
        const auto pt = reinterpret_cast<uintptr_t>(t.const_data_ptr());
        if (!(ps + s.nbytes() <= pt || pt + t.nbytes() <= ps)) {
          Py_RETURN_NONE;
        }
      }
    }
  }
  return key.tuple();
}

PyObject* fast_key(PyObject* /*self*/, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 2) {
    PyErr_SetString(PyExc_TypeError, "fast_key(spec, *args)");
    return nullptr;
  }
  try {
    return key_of(args[0], args + 1, nargs - 1);
  } catch (const std::exception&) {  // metadata a plain tensor does not have: the full path decides
    Py_RETURN_NONE;
  }
}

PyMethodDef fast_key_def = {"fast_key", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fast_key)),
                            METH_FASTCALL, "fast_key(spec, *args): the fast path's key of a call, or None"};

}  // namespace

PyObject* make_fast_key() { return PyCFunction_New(&fast_key_def, nullptr); }

}  // namespace normswitch_ext
