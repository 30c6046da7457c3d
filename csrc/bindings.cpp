// edgepose._decoder: numpy <-> MapView for the decoder. The only decoder file that includes
// pybind11 (bindings_render.cpp does the same for the renderer). Every check on the arrays lives
// here, once per batch, and fails as edgepose.InputError (a ValueError; from std::invalid_argument)
// naming the argument.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "assignment.hpp"
#include "decoder.hpp"
#include "tracking.hpp"

namespace py = pybind11;
using edgepose::DType;
using edgepose::MapView;

void bind_render(py::module_& m);  // bindings_render.cpp

namespace {

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

// A batch of maps as a MapView of image 0 plus the element stride between images.
struct BatchView {
  MapView view;
  std::ptrdiff_t batch = 0;
  std::ptrdiff_t stride_b = 0;  // in elements

  MapView image(std::ptrdiff_t b) const {
    MapView v = view;
    const std::size_t item = view.dtype == DType::F32 ? 4 : 2;
    v.data = static_cast<const char*>(view.data) + b * stride_b * static_cast<std::ptrdiff_t>(item);
    return v;
  }
};

BatchView batch_view(const py::array& a, const char* name, bool nchw) {
  const py::dtype dt = a.dtype();
  DType dtype;
  if (dt.kind() == 'f' && dt.itemsize() == 4) {
    dtype = DType::F32;
  } else if (dt.kind() == 'f' && dt.itemsize() == 2) {
    dtype = DType::F16;
  } else {
    fail(std::string(name) + ": dtype must be float16 or float32, got " + std::string(py::str(dt)));
  }
  if (dt.byteorder() == '>') fail(std::string(name) + ": big-endian arrays are not supported; convert to native order");
  if (a.ndim() != 4) {
    fail(std::string(name) + ": expected a 4-D batch (B, H, W, C) or (B, C, H, W), got " + std::to_string(a.ndim()) +
         "-D");
  }
  const auto item = static_cast<std::ptrdiff_t>(dt.itemsize());
  if (reinterpret_cast<std::uintptr_t>(a.data()) % static_cast<std::uintptr_t>(item) != 0) {
    fail(std::string(name) + ": the array's data is not aligned to its element size; pass a copy");
  }
  std::ptrdiff_t es[4];
  for (int d = 0; d < 4; ++d) {
    if (a.strides(d) % item != 0) {
      fail(std::string(name) + ": strides must be multiples of the element size; pass a copy");
    }
    es[d] = a.strides(d) / item;
  }
  BatchView bv;
  bv.batch = a.shape(0);
  bv.stride_b = es[0];
  MapView& v = bv.view;
  v.data = a.data();
  v.dtype = dtype;
  // Logical (H, W, C) whatever the layout: NCHW is only other strides.
  const int h = nchw ? 2 : 1, w = nchw ? 3 : 2, c = nchw ? 1 : 3;
  v.height = a.shape(h);
  v.width = a.shape(w);
  v.channels = a.shape(c);
  v.stride_h = es[h];
  v.stride_w = es[w];
  v.stride_c = es[c];
  return bv;
}

edgepose::DecoderConfig config_from_dict(const py::dict& d) {
  edgepose::DecoderConfig c;
  auto choice = [](const py::handle& v, const char* field, std::initializer_list<const char*> names) -> int {
    const std::string s = py::cast<std::string>(v);
    int i = 0;
    std::string allowed;
    for (const char* n : names) {
      if (s == n) return i;
      allowed += (i ? ", " : "") + std::string(n);
      ++i;
    }
    fail(std::string("config: ") + field + " must be one of " + allowed + ", got '" + s + "'");
  };
  for (const auto& item : d) {
    const std::string key = py::cast<std::string>(item.first);
    const py::handle v = item.second;
    try {
      if (key == "peak_threshold") c.peak_threshold = py::cast<double>(v);
      else if (key == "nms_radius") c.nms_radius = py::cast<int>(v);
      else if (key == "refine")
        c.refine = static_cast<edgepose::Refine>(choice(v, "refine", {"none", "centroid", "quadratic", "gaussian"}));
      else if (key == "max_peaks") c.max_peaks = py::cast<int>(v);
      else if (key == "paf_samples") c.paf_samples = py::cast<int>(v);
      else if (key == "paf_sample_step") c.paf_sample_step = py::cast<double>(v);
      else if (key == "max_paf_samples") c.max_paf_samples = py::cast<int>(v);
      else if (key == "paf_threshold") c.paf_threshold = py::cast<double>(v);
      else if (key == "min_sample_fraction") c.min_sample_fraction = py::cast<double>(v);
      else if (key == "limb_score")
        c.limb_score = static_cast<edgepose::LimbScore>(choice(v, "limb_score", {"mean", "mean_passing"}));
      else if (key == "length_prior") c.length_prior = py::cast<double>(v);
      else if (key == "min_limb_score") c.min_limb_score = py::cast<double>(v);
      else if (key == "matching")
        c.matching = static_cast<edgepose::Matching>(choice(v, "matching", {"greedy", "optimal"}));
      else if (key == "peak_score_weight") c.peak_score_weight = py::cast<double>(v);
      else if (key == "assembly_order")
        c.assembly_order = static_cast<edgepose::AssemblyOrder>(choice(v, "assembly_order", {"limb", "score"}));
      else if (key == "merge") c.merge = py::cast<bool>(v);
      else if (key == "min_parts") c.min_parts = py::cast<int>(v);
      else if (key == "min_person_score") c.min_person_score = py::cast<double>(v);
      else if (key == "person_score")
        c.person_score = static_cast<edgepose::PersonScore>(choice(v, "person_score", {"mean", "tao", "mean_parts"}));
      else if (key == "nearest_partners") c.nearest_partners = py::cast<int>(v);
      else if (key == "parts_exponent") c.parts_exponent = py::cast<double>(v);
      else if (key == "max_persons") c.max_persons = py::cast<int>(v);
      else fail("config: unknown field '" + key + "'");
    } catch (const py::cast_error&) {
      fail("config: field '" + key + "' has the wrong type (" + std::string(py::str(py::type::of(v))) + ")");
    }
  }
  return c;
}

// Lets Ctrl-C stop a long batch: between images, at most every kEvery of wall time, it takes the GIL
// back for a moment and runs Python's signal handlers (PyErr_CheckSignals, which only acts in the
// main thread). Once a handler raises, `raised` is set, the error stays pending, and the caller
// stops and rethrows it. Called with the GIL released; cheap (a clock read) between checks.
struct SignalCheck {
  static constexpr std::chrono::milliseconds kEvery{20};
  std::chrono::steady_clock::time_point next = std::chrono::steady_clock::now() + kEvery;
  bool raised = false;

  bool interrupted() {
    if (raised) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now < next) return false;
    next = now + kEvery;
    py::gil_scoped_acquire acquire;
    raised = PyErr_CheckSignals() != 0;
    return raised;
  }
};

// The Python-facing decoder: an edgepose::Decoder plus a mutex, so that two Python threads
// sharing one object take turns instead of racing on its scratch.
class PyDecoder {
 public:
  PyDecoder(const py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>& limbs,
            const py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>& starts_person,
            std::int32_t num_keypoints, const py::dict& config)
      : decoder_(make_limbs(limbs, starts_person), num_keypoints, config_from_dict(config)) {}

  py::list decode(const py::array& heatmap, const py::array& paf, double heatmap_stride, double paf_stride,
                  const std::string& layout) {
    if (layout != "NHWC" && layout != "NCHW") fail("layout must be 'NHWC' or 'NCHW', got '" + layout + "'");
    const bool nchw = layout == "NCHW";
    const BatchView hb = batch_view(heatmap, "heatmap", nchw);
    const BatchView pb = batch_view(paf, "paf", nchw);
    if (hb.batch != pb.batch) {
      fail("heatmap and paf batch sizes differ: " + std::to_string(hb.batch) + " vs " + std::to_string(pb.batch));
    }
    decoder_.check_maps(hb.view, pb.view, heatmap_stride, paf_stride);

    std::vector<edgepose::Result> results(static_cast<std::size_t>(hb.batch));
    SignalCheck signals;
    {
      py::gil_scoped_release release;
      // Values: one branch-free scan per distinct image (a batch axis of stride 0 is one image).
      for (const BatchView* bv : {&hb, &pb}) {
        const std::ptrdiff_t distinct = bv->stride_b == 0 ? std::min<std::ptrdiff_t>(bv->batch, 1) : bv->batch;
        for (std::ptrdiff_t b = 0; b < distinct && !signals.interrupted(); ++b) {
          if (!edgepose::all_finite(bv->image(b))) {
            const char* name = bv == &hb ? "heatmap" : "paf";
            throw std::invalid_argument(std::string(name) + ": contains NaN or infinity (image " + std::to_string(b) +
                                        ")");
          }
        }
      }
      const std::lock_guard<std::mutex> lock(mutex_);
      for (std::ptrdiff_t b = 0; b < hb.batch && !signals.interrupted(); ++b) {
        decoder_.decode(hb.image(b), pb.image(b), heatmap_stride, paf_stride, results[static_cast<std::size_t>(b)]);
      }
    }
    if (signals.raised) throw py::error_already_set();  // KeyboardInterrupt (or what a handler raised)
    py::list out;
    const auto n = static_cast<py::ssize_t>(decoder_.num_keypoints());
    for (const edgepose::Result& r : results) {
      const auto m = static_cast<py::ssize_t>(r.num_persons);
      py::array_t<float> kp({m, n, py::ssize_t{3}});
      py::array_t<float> sc({m});
      if (m > 0) {
        std::copy(r.keypoints.begin(), r.keypoints.end(), kp.mutable_data());
        std::copy(r.scores.begin(), r.scores.end(), sc.mutable_data());
      }
      out.append(py::make_tuple(kp, sc));
    }
    return out;
  }

  std::int32_t num_keypoints() const { return decoder_.num_keypoints(); }
  std::int32_t num_limbs() const { return decoder_.num_limbs(); }

 private:
  static std::vector<edgepose::Limb> make_limbs(
      const py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>& limbs,
      const py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>& starts_person) {
    if (limbs.ndim() != 2 || limbs.shape(1) != 4) {
      fail("limbs: expected shape (K, 4) with rows from, to, paf_x, paf_y");
    }
    const py::ssize_t k = limbs.shape(0);
    if (starts_person.ndim() != 1 || starts_person.shape(0) != k) {
      fail("starts_person: expected shape (" + std::to_string(k) + ",), one flag per limb");
    }
    std::vector<edgepose::Limb> out(static_cast<std::size_t>(k));
    const auto L = limbs.unchecked<2>();
    const auto S = starts_person.unchecked<1>();
    for (py::ssize_t i = 0; i < k; ++i) {
      out[i] = {L(i, 0), L(i, 1), L(i, 2), L(i, 3), S(i) != 0};
    }
    return out;
  }

  edgepose::Decoder decoder_;
  std::mutex mutex_;
};

// linear_assignment: the decoder's optimal matcher (Matcher::assign) on a dense weight matrix.
py::array_t<std::int64_t> linear_assignment(const py::object& weights_obj, double min_weight) {
  if (!py::isinstance<py::array>(weights_obj)) {
    fail("weights: expected a 2-D numpy array, got " + std::string(py::str(py::type::of(weights_obj).attr("__name__"))));
  }
  const py::array any = py::reinterpret_borrow<py::array>(weights_obj);
  const char kind = any.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b') {
    fail("weights: dtype must be a real number type, got " + std::string(py::str(any.dtype())));
  }
  if (any.ndim() != 2) fail("weights: expected a 2-D array (rows, columns), got " + std::to_string(any.ndim()) + "-D");
  if (!(min_weight > 0.0) || !std::isfinite(min_weight)) {
    fail("min_weight: must be a finite number > 0, got " + std::to_string(min_weight));
  }
  const auto w = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(any);
  if (!w) fail("weights: cannot be read as float64");
  const py::ssize_t nr = w.shape(0), nc = w.shape(1);
  constexpr py::ssize_t kMaxSide = 1 << 15;
  if (nr > kMaxSide || nc > kMaxSide) {
    fail("weights: at most " + std::to_string(kMaxSide) + " rows and columns, got " + std::to_string(nr) + " x " +
         std::to_string(nc));
  }
  const double* data = w.data();
  std::vector<std::pair<std::int32_t, std::int32_t>> pairs;
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < nr * nc; ++i) {
      if (!std::isfinite(data[i])) throw std::invalid_argument("weights: contains NaN or infinity");
    }
    edgepose::Matcher matcher;
    matcher.assign(data, static_cast<std::int32_t>(nr), static_cast<std::int32_t>(nc), min_weight, pairs);
  }
  py::array_t<std::int64_t> out({static_cast<py::ssize_t>(pairs.size()), py::ssize_t{2}});
  auto o = out.mutable_unchecked<2>();
  for (std::size_t k = 0; k < pairs.size(); ++k) {
    o(static_cast<py::ssize_t>(k), 0) = pairs[k].first;
    o(static_cast<py::ssize_t>(k), 1) = pairs[k].second;
  }
  return out;
}

// keypoint_similarity: the tracker's OKS matrix (edgepose/tracking.py), checked here.
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>;

py::array_t<double> keypoint_similarity(const F64& pred, const U8& known, const F64& inv_var, const F64& det,
                                        const U8& vis) {
  if (pred.ndim() != 3 || pred.shape(2) != 2) fail("pred: expected shape (T, N, 2)");
  if (det.ndim() != 3 || det.shape(2) != 2) fail("det: expected shape (M, N, 2)");
  const py::ssize_t T = pred.shape(0), N = pred.shape(1), M = det.shape(0);
  if (det.shape(1) != N) fail("det: " + std::to_string(det.shape(1)) + " keypoints, pred has " + std::to_string(N));
  auto check = [](const py::array& a, const char* name, py::ssize_t rows, py::ssize_t cols) {
    if (a.ndim() != 2 || a.shape(0) != rows || a.shape(1) != cols) {
      fail(std::string(name) + ": expected shape (" + std::to_string(rows) + ", " + std::to_string(cols) + ")");
    }
  };
  check(known, "known", T, N);
  check(inv_var, "inv_var", T, N);
  check(vis, "vis", M, N);
  py::array_t<double> out({T, M});
  {
    py::gil_scoped_release release;
    edgepose::keypoint_similarity(pred.data(), known.data(), inv_var.data(), T, det.data(), vis.data(), M, N,
                                  out.mutable_data());
  }
  return out;
}

// one_euro_step: the tracker's smoothing, in place on its state arrays (exact dtypes, C order).
template <typename T>
T* state_array(py::array& a, const char* name, py::ssize_t rows, py::ssize_t n, py::ssize_t last) {
  const bool ok_type = py::isinstance<py::array_t<T>>(a);
  const bool ok_shape = a.ndim() == (last ? 3 : 2) && a.shape(0) == rows && a.shape(1) == n &&
                        (!last || a.shape(2) == last);
  if (!ok_type || !ok_shape || !(a.flags() & py::array::c_style) || !a.writeable()) {
    fail(std::string(name) + ": expected a writable C-contiguous state array of the tracker's shape and dtype");
  }
  return static_cast<T*>(a.mutable_data());
}

py::array_t<double> one_euro_step(py::array fx, py::array fdx, py::array ft, py::array fframe,
                                  const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& tracks,
                                  const F64& xy, const U8& vis, double t, std::int64_t frame, double min_cutoff,
                                  double beta, double d_cutoff, std::int64_t max_gap) {
  if (fx.ndim() != 3) fail("fx: expected shape (T, N, 2)");
  const py::ssize_t T = fx.shape(0), N = fx.shape(1), R = tracks.size();
  edgepose::OneEuroState s{state_array<double>(fx, "fx", T, N, 2), state_array<double>(fdx, "fdx", T, N, 2),
                           state_array<double>(ft, "ft", T, N, 0), state_array<std::int64_t>(fframe, "fframe", T, N, 0),
                           static_cast<std::int64_t>(N)};
  if (xy.ndim() != 3 || xy.shape(0) != R || xy.shape(1) != N || xy.shape(2) != 2) fail("xy: expected (R, N, 2)");
  if (vis.ndim() != 2 || vis.shape(0) != R || vis.shape(1) != N) fail("vis: expected (R, N)");
  const std::int64_t* tr = tracks.data();
  for (py::ssize_t r = 0; r < R; ++r) {
    if (tr[r] < 0 || tr[r] >= T) fail("tracks: index " + std::to_string(tr[r]) + " out of range");
  }
  if (!(min_cutoff > 0) || !(d_cutoff > 0) || !(beta >= 0)) fail("one_euro_step: bad filter parameters");
  const edgepose::OneEuroParams p{min_cutoff, beta, d_cutoff, max_gap};
  py::array_t<double> out({R, N, py::ssize_t{2}});
  {
    py::gil_scoped_release release;
    edgepose::one_euro_step(s, p, tr, R, xy.data(), vis.data(), t, frame, out.mutable_data());
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_decoder, m) {
  m.doc() = "edgepose's C++ pose decoder and ground-truth renderer (private; use edgepose.decode)";
  // Every input error of the C++ side (std::invalid_argument) arrives as edgepose.errors.InputError,
  // a ValueError, so that `except EdgePoseError` catches it like the Python side's. The class is
  // looked up once, here; the reference is kept for the life of the interpreter.
  static PyObject* const input_error =
      py::object(py::module_::import("edgepose.errors").attr("InputError")).release().ptr();
  m.attr("InputError") = py::handle(input_error);
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(input_error, e.what());
    }
  });
  m.attr("__version__") = EDGEPOSE_VERSION;
  m.attr("MAX_MAP_CELLS") = edgepose::kMaxMapCells;
  m.attr("MAX_LIMB_PEAKS") = edgepose::kMaxLimbPeaks;

  py::class_<PyDecoder>(m, "Decoder", "The C++ decoder of docs/decoder.md for one topology and configuration.")
      .def(py::init<const py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>&,
                    const py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>&, std::int32_t,
                    const py::dict&>(),
           py::arg("limbs"), py::arg("starts_person"), py::arg("num_keypoints"), py::arg("config") = py::dict(),
           "limbs: (K, 4) int32 rows from, to, paf_x, paf_y; starts_person: (K,) flags; config: DecoderConfig "
           "fields as a dict (missing fields take their defaults).")
      .def("decode", &PyDecoder::decode, py::arg("heatmap"), py::arg("paf"), py::arg("heatmap_stride"),
           py::arg("paf_stride"), py::arg("layout") = "NHWC",
           "Decode a batch: heatmap (B, H, W, N+1) and paf (B, Hp, Wp, 2K) (or NCHW), float16/float32. Returns a "
           "list of B (keypoints (M, N, 3) float32, scores (M,) float32). Releases the GIL.")
      .def_property_readonly("num_keypoints", &PyDecoder::num_keypoints)
      .def_property_readonly("num_limbs", &PyDecoder::num_limbs);

  m.def("linear_assignment", &linear_assignment, py::arg("weights"), py::arg("min_weight"),
        "Maximum-weight bipartite matching: weights (R, C) real (float64 after conversion); among the pairs "
        "with weight >= min_weight (> 0), a matching of maximum total weight, as an (P, 2) int64 array of "
        "(row, column) pairs in ascending row order. The decoder's optimal solver (shortest augmenting paths); "
        "releases the GIL; ValueError for a non-2-D or non-finite array or min_weight <= 0.");

  m.def("keypoint_similarity", &keypoint_similarity, py::arg("pred"), py::arg("known"), py::arg("inv_var"),
        py::arg("det"), py::arg("vis"),
        "The tracker's (T, M) keypoint similarity: mean over the keypoints in both (known (T, N) and vis (M, N)) "
        "of exp(-0.5 |pred - det|^2 inv_var), pred (T, N, 2), det (M, N, 2), inv_var (T, N); 0 where none is "
        "shared. Releases the GIL.");

  m.def("one_euro_step", &one_euro_step, py::arg("fx"), py::arg("fdx"), py::arg("ft"), py::arg("fframe"),
        py::arg("tracks"), py::arg("xy"), py::arg("vis"), py::arg("t"), py::arg("frame"), py::arg("min_cutoff"),
        py::arg("beta"), py::arg("d_cutoff"), py::arg("max_gap"),
        "The tracker's One Euro step: filters xy (R, N, 2) of persons on tracks (R,), in place on the state "
        "fx, fdx (T, N, 2) float64, ft (T, N) float64, fframe (T, N) int64; returns the output (R, N, 2).");

  bind_render(m);
}
