// Python bindings of the ground-truth renderer (csrc/render.hpp). Converts numpy arrays to views,
// allocates the output in the requested layout, and releases the GIL while rendering. Every rule
// on the values is checked by the core, whose std::invalid_argument arrives as edgepose.InputError
// (a ValueError; the translator is registered in bindings.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "render.hpp"

namespace py = pybind11;

namespace {

using KeypointArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
using LimbArray = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>;

edgepose::KeypointsView keypoints_view(const KeypointArray& keypoints) {
  if (keypoints.ndim() != 3 || keypoints.shape(2) != 3) {
    std::string shape = "(";
    for (py::ssize_t d = 0; d < keypoints.ndim(); ++d) shape += (d ? ", " : "") + std::to_string(keypoints.shape(d));
    throw std::invalid_argument("keypoints: expected shape (M, N, 3), got " + shape + ")");
  }
  edgepose::KeypointsView view;
  view.data = keypoints.data();
  view.persons = keypoints.shape(0);
  view.keypoints = keypoints.shape(1);
  return view;
}

// A new float32 array of logical shape (H, W, C), stored HWC or CHW, and its mutable view.
py::array_t<float> allocate(std::ptrdiff_t height, std::ptrdiff_t width, std::ptrdiff_t channels, bool nchw,
                            edgepose::MutMapView& view) {
  py::array_t<float> out = nchw ? py::array_t<float>({channels, height, width})
                                : py::array_t<float>({height, width, channels});
  view.data = out.mutable_data();
  view.height = height;
  view.width = width;
  view.channels = channels;
  if (nchw) {
    view.stride_c = height * width;
    view.stride_h = width;
    view.stride_w = 1;
  } else {
    view.stride_h = width * channels;
    view.stride_w = channels;
    view.stride_c = 1;
  }
  return out;
}

py::array_t<float> render_heatmaps(const KeypointArray& keypoints, std::ptrdiff_t height, std::ptrdiff_t width,
                                   double stride, double sigma, bool nchw) {
  const edgepose::KeypointsView kp = keypoints_view(keypoints);
  edgepose::check_render_heatmaps(kp, height, width, stride, sigma);  // before allocating
  edgepose::MutMapView view;
  py::array_t<float> out = allocate(height, width, kp.keypoints + 1, nchw, view);
  {
    py::gil_scoped_release release;
    edgepose::render_heatmaps(kp, stride, sigma, view);
  }
  return out;
}

py::array_t<float> render_pafs(const KeypointArray& keypoints, const LimbArray& limbs, std::ptrdiff_t height,
                               std::ptrdiff_t width, double stride, double width_cells, bool nchw) {
  const edgepose::KeypointsView kp = keypoints_view(keypoints);
  if (limbs.ndim() != 2 || limbs.shape(1) != 4) {
    throw std::invalid_argument("limbs: expected shape (K, 4) int32 rows (from, to, paf_x, paf_y)");
  }
  const std::ptrdiff_t num_limbs = limbs.shape(0);
  edgepose::check_render_pafs(kp, limbs.data(), num_limbs, height, width, stride, width_cells);
  edgepose::MutMapView view;
  py::array_t<float> out = allocate(height, width, 2 * num_limbs, nchw, view);
  {
    py::gil_scoped_release release;
    edgepose::render_pafs(kp, limbs.data(), num_limbs, stride, width_cells, view);
  }
  return out;
}

}  // namespace

void bind_render(py::module_& m) {
  m.def("render_heatmaps", &render_heatmaps, py::arg("keypoints"), py::arg("height"), py::arg("width"),
        py::arg("stride"), py::arg("sigma") = 1.0, py::arg("nchw") = false,
        "Ground-truth heatmaps from keypoints (M, N, 3) in input pixels: float32 (H, W, N + 1), or\n"
        "(N + 1, H, W) when nchw. sigma in cells. Raises edgepose.InputError (a ValueError) on bad shapes or values.");
  m.def("render_pafs", &render_pafs, py::arg("keypoints"), py::arg("limbs"), py::arg("height"), py::arg("width"),
        py::arg("stride"), py::arg("width_cells") = 1.0, py::arg("nchw") = false,
        "Ground-truth PAFs from keypoints (M, N, 3) and limbs (K, 4) int32 (from, to, paf_x, paf_y):\n"
        "float32 (H, W, 2K), or (2K, H, W) when nchw. Raises edgepose.InputError (a ValueError) on bad shapes or values.");
}
