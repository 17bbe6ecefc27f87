// The extension module ivcr_engine._core. Each component registers itself from its own
// csrc/bindings/bind_<name>.cpp; CMake generates the list below from the files present.
#include <pybind11/pybind11.h>

#include <exception>
#include <new>

namespace py = pybind11;

#define IVCR_BINDING(name) void bind_##name(py::module_& m);
#include "bindings_list.inc"
#undef IVCR_BINDING

PYBIND11_MODULE(_core, m) {
  m.doc() = "ivcr_engine native core";
  // An allocation that fails anywhere in the core reaches Python with a message that says what
  // happened and what to do, never as a bare "std::bad_alloc".
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError,
                      "the native core could not allocate the memory this request needs: ask for fewer or smaller "
                      "outputs (decode requests are checked against ivcr_engine.memory_budget() up front)");
    }
  });
#define IVCR_BINDING(name) bind_##name(m);
#include "bindings_list.inc"
#undef IVCR_BINDING
}
