// Peaks: per-channel non-maximum suppression and sub-pixel refinement (docs/decoder.md, section 1).
#include "peaks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace edgepose {
namespace {

// Reads one channel of a map as double, whatever the element type; T is float or std::uint16_t
// (IEEE binary16 bits). Only the pointer arithmetic differs between NHWC and NCHW.
template <typename T>
struct Plane {
  const T* base;  // element (0, 0) of the channel
  std::ptrdiff_t sh, sw, height, width;

  static double load(const T* p) {
    if constexpr (std::is_same_v<T, float>) {
      return static_cast<double>(*p);
    } else {
      return static_cast<double>(half_to_float(*p));
    }
  }
  double operator()(std::ptrdiff_t i, std::ptrdiff_t j) const { return load(base + i * sh + j * sw); }
};

// "a before b" in the order the cap and the ids use: higher score first, then raster order.
inline bool stronger(const Peak& a, const Peak& b) {
  if (a.score != b.score) return a.score > b.score;
  if (a.row != b.row) return a.row < b.row;
  return a.col < b.col;
}

// The section-1 NMS test for cell (i, j) of value v: strictly above the cells before it in raster
// order and at least the cells after it, so a plateau yields exactly its first cell.
template <typename T>
bool is_local_max(const Plane<T>& h, std::ptrdiff_t i, std::ptrdiff_t j, double v, int r) {
  // The 4 nearest cells first (part of the same test): on smooth maps most cells fail here.
  if (r >= 1) {
    if (i > 0 && !(v > h(i - 1, j))) return false;
    if (j > 0 && !(v > h(i, j - 1))) return false;
    if (j + 1 < h.width && !(v >= h(i, j + 1))) return false;
    if (i + 1 < h.height && !(v >= h(i + 1, j))) return false;
  }
  const std::ptrdiff_t i0 = std::max<std::ptrdiff_t>(i - r, 0), i1 = std::min<std::ptrdiff_t>(i + r, h.height - 1);
  const std::ptrdiff_t j0 = std::max<std::ptrdiff_t>(j - r, 0), j1 = std::min<std::ptrdiff_t>(j + r, h.width - 1);
  for (std::ptrdiff_t ii = i0; ii <= i1; ++ii) {
    for (std::ptrdiff_t jj = j0; jj <= j1; ++jj) {
      const double n = h(ii, jj);
      const bool before = ii < i || (ii == i && jj < j);
      if (before ? !(v > n) : !(v >= n)) return false;  // the centre itself passes (v >= v)
    }
  }
  return true;
}

// Parabola vertex through (-1, l), (0, c), (+1, r): the offset of the maximum, 0 when the
// parabola does not open downwards.
inline double parabola_offset(double l, double c, double r) {
  const double den = l - 2.0 * c + r;
  return den < 0.0 ? 0.5 * (l - r) / den : 0.0;
}

// Offset along one axis for `quadratic` / `gaussian`; has_l / has_r: the neighbours are in bounds.
inline double axis_offset(Refine mode, bool has_l, bool has_r, double l, double c, double r) {
  if (!has_l || !has_r) return 0.0;
  // A Gaussian is a parabola in log space, so the log-parabola vertex is exact for it.
  if (mode == Refine::Gaussian && l > 0.0 && c > 0.0 && r > 0.0) {
    return parabola_offset(std::log(l), std::log(c), std::log(r));
  }
  return parabola_offset(l, c, r);
}

template <typename T>
void refine_peak(const Plane<T>& h, Refine mode, Peak& p, double& dx, double& dy) {
  dx = dy = 0.0;
  const std::ptrdiff_t i = p.row, j = p.col;
  if (mode == Refine::None) return;
  if (mode == Refine::Centroid) {
    double sw = 0.0, sx = 0.0, sy = 0.0;
    for (std::ptrdiff_t di = -1; di <= 1; ++di) {
      for (std::ptrdiff_t dj = -1; dj <= 1; ++dj) {
        const std::ptrdiff_t ii = i + di, jj = j + dj;
        if (ii < 0 || jj < 0 || ii >= h.height || jj >= h.width) continue;
        const double w = std::max(h(ii, jj), 0.0);
        sw += w;
        sx += w * static_cast<double>(dj);
        sy += w * static_cast<double>(di);
      }
    }
    if (sw > 0.0) {
      dx = sx / sw;
      dy = sy / sw;
    }
  } else {
    const double c = p.score;
    const bool has_left = j > 0, has_right = j + 1 < h.width;
    const bool has_up = i > 0, has_down = i + 1 < h.height;
    dx = axis_offset(mode, has_left, has_right, has_left ? h(i, j - 1) : 0.0, c, has_right ? h(i, j + 1) : 0.0);
    dy = axis_offset(mode, has_up, has_down, has_up ? h(i - 1, j) : 0.0, c, has_down ? h(i + 1, j) : 0.0);
  }
  dx = std::clamp(dx, -0.5, 0.5);
  dy = std::clamp(dy, -0.5, 0.5);
}

// Offers cell (i, j) of value v to one channel's peaks. `out` doubles as a heap whose front is the
// weakest kept peak: O(max_peaks) memory even when every cell is a peak. Each channel's cells must
// come in raster order, so a newcomer that only ties the weakest is later in raster order, hence
// weaker, and is rejected.
template <typename T>
inline void offer(const Plane<T>& h, std::ptrdiff_t i, std::ptrdiff_t j, double v, const PeakParams& params,
                  std::vector<Peak>& out) {
  if (!(v > params.threshold)) return;
  const std::size_t cap = static_cast<std::size_t>(params.max_peaks);
  if (out.size() == cap && !(v > out.front().score)) return;  // could not enter the top list
  if (!is_local_max(h, i, j, v, params.nms_radius)) return;
  Peak p;
  p.score = v;
  p.row = static_cast<std::int32_t>(i);
  p.col = static_cast<std::int32_t>(j);
  if (out.size() == cap) {
    std::pop_heap(out.begin(), out.end(), stronger);
    out.back() = p;
  } else {
    out.push_back(p);
  }
  std::push_heap(out.begin(), out.end(), stronger);
}

// Orders one channel's kept peaks (ids: strongest first, ties in raster order) and places them.
template <typename T>
void finish(const Plane<T>& h, double stride, const PeakParams& params, std::vector<Peak>& out) {
  std::sort(out.begin(), out.end(), stronger);
  for (Peak& p : out) {
    double dx = 0.0, dy = 0.0;
    refine_peak(h, params.refine, p, dx, dy);
    p.x = (static_cast<double>(p.col) + dx + 0.5) * stride - 0.5;
    p.y = (static_cast<double>(p.row) + dy + 0.5) * stride - 0.5;
  }
}

// The largest float `lo` such that every float v with (double)v > t also has v > lo: a float
// pre-filter for the double threshold test that can never drop a candidate.
inline float float_below(double t) {
  float f = static_cast<float>(t);
  if (static_cast<double>(f) >= t) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

// Whether any of the n floats at p exceeds lo: a branch-free loop the compiler vectorises, so the
// usual mostly-empty rows and cells of a heatmap are passed over at memory speed.
inline bool any_above(const float* p, std::ptrdiff_t n, float lo) {
  unsigned any = 0;
  for (std::ptrdiff_t k = 0; k < n; ++k) any |= static_cast<unsigned>(p[k] > lo);
  return any != 0;
}

template <typename T>
void find_peaks_t(const Plane<T>& h, double stride, const PeakParams& params, std::vector<Peak>& out) {
  out.clear();
  const float lo = float_below(params.threshold);
  for (std::ptrdiff_t i = 0; i < h.height; ++i) {
    if constexpr (std::is_same_v<T, float>) {
      if (h.sw == 1 && !any_above(h.base + i * h.sh, h.width, lo)) continue;  // no cell of row i can be a peak
    }
    for (std::ptrdiff_t j = 0; j < h.width; ++j) offer(h, i, j, h(i, j), params, out);
  }
  finish(h, stride, params, out);
}

template <typename T>
Plane<T> plane(const MapView& heat, std::ptrdiff_t channel) {
  return Plane<T>{static_cast<const T*>(heat.data) + channel * heat.stride_c, heat.stride_h, heat.stride_w,
                  heat.height, heat.width};
}

// Channels interleaved in memory (NHWC, stride_c == 1): one pass over the cells in memory order,
// every channel at each cell, instead of one strided pass per channel. Each channel still sees
// its cells in raster order, so the peaks are exactly those of find_peaks_t.
template <typename T>
void find_peaks_interleaved(const MapView& heat, std::int32_t channels, double stride, const PeakParams& params,
                            std::vector<std::vector<Peak>>& out) {
  const auto* base = static_cast<const T*>(heat.data);
  const float lo = float_below(params.threshold);
  for (std::int32_t c = 0; c < channels; ++c) out[c].clear();
  for (std::ptrdiff_t i = 0; i < heat.height; ++i) {
    for (std::ptrdiff_t j = 0; j < heat.width; ++j) {
      const T* cell = base + i * heat.stride_h + j * heat.stride_w;
      if constexpr (std::is_same_v<T, float>) {
        if (!any_above(cell, channels, lo)) continue;  // no keypoint channel of this cell can be a peak
      }
      for (std::int32_t c = 0; c < channels; ++c) {
        const double v = Plane<T>::load(cell + c);
        if (!(v > params.threshold)) continue;  // the common case: no plane needed
        offer(Plane<T>{base + c, heat.stride_h, heat.stride_w, heat.height, heat.width}, i, j, v, params, out[c]);
      }
    }
  }
  for (std::int32_t c = 0; c < channels; ++c) finish(plane<T>(heat, c), stride, params, out[c]);
}

}  // namespace

void find_all_peaks(const MapView& heat, std::int32_t channels, double stride, const PeakParams& params,
                    std::vector<std::vector<Peak>>& out) {
  if (heat.stride_c == 1) {
    if (heat.dtype == DType::F32) {
      find_peaks_interleaved<float>(heat, channels, stride, params, out);
    } else {
      find_peaks_interleaved<std::uint16_t>(heat, channels, stride, params, out);
    }
    return;
  }
  for (std::int32_t c = 0; c < channels; ++c) find_peaks(heat, c, stride, params, out[c]);
}

void find_peaks(const MapView& heat, std::ptrdiff_t channel, double stride, const PeakParams& params,
                std::vector<Peak>& out) {
  if (heat.dtype == DType::F32) {
    find_peaks_t(plane<float>(heat, channel), stride, params, out);
  } else {
    find_peaks_t(plane<std::uint16_t>(heat, channel), stride, params, out);
  }
}

}  // namespace edgepose
