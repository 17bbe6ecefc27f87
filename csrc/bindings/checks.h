// Strict argument checks shared by the bindings: integers must be integers (a float offset or id
// is a TypeError, never truncated) and a count beyond int64 is a ValueError, not a pybind11
// "incompatible function arguments".
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace ivcr::bindings {

namespace py = pybind11;

// An integer argument (Python int or NumPy integer; bool and float refused) as int64.
inline int64_t int64_arg(const py::handle& x, const std::string& name) {
  if (PyBool_Check(x.ptr()) || PyFloat_Check(x.ptr()) || !PyIndex_Check(x.ptr()))
    throw py::type_error(name + " must be an integer, got " + std::string(py::str(py::type::handle_of(x).attr("__name__"))));
  py::object as_int = py::reinterpret_steal<py::object>(PyNumber_Index(x.ptr()));
  if (!as_int) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(as_int.ptr(), &overflow);
  if (overflow != 0)
    throw py::value_error(name + " = " + std::string(py::str(as_int)) + " is beyond the 64-bit integer range");
  return static_cast<int64_t>(v);
}

// An array that must hold integers (int/uint dtypes; a list of Python ints qualifies).
inline void require_integer_array(const py::array& a, const std::string& name) {
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error(name + " must be integers, got " + std::string(py::str(a.dtype())) +
                         " (fractional values would be truncated)");
}

}  // namespace ivcr::bindings
