// The extension module ivcr_engine._core. Each component registers itself from its own
// csrc/bindings/bind_<name>.cpp; CMake generates the list below from the files present.
#include <pybind11/pybind11.h>

namespace py = pybind11;

#define IVCR_BINDING(name) void bind_##name(py::module_& m);
#include "bindings_list.inc"
#undef IVCR_BINDING

PYBIND11_MODULE(_core, m) {
  m.doc() = "ivcr_engine native core";
#define IVCR_BINDING(name) bind_##name(m);
#include "bindings_list.inc"
#undef IVCR_BINDING
}
