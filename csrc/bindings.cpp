// The only translation units that include pybind11: bindings.cpp (decoder) and bindings_render.cpp.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_render(py::module_& m);  // bindings_render.cpp

PYBIND11_MODULE(_decoder, m) {
  m.doc() = "edgepose's C++ pose decoder and ground-truth renderer (private; use edgepose.decode)";
  m.attr("__version__") = EDGEPOSE_VERSION;
  bind_render(m);
}
