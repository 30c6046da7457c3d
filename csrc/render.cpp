// Ground-truth heatmaps and PAFs (docs/decoder.md, "Rendering"). Each keypoint only visits the
// cells its truncated Gaussian can reach and each limb only the bounding box of its band, so the
// cost grows with the persons' extent, not with M x H x W.
#include "render.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgepose {
namespace {

// Map coordinate of input pixel x at stride s (docs/decoder.md section 0).
double to_map(double x, double s) { return (x + 0.5) / s - 0.5; }

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// sigma, width: in (0, kMaxSpread] cells.
void check_spread(const char* name, double v) {
  if (!std::isfinite(v) || !(v > 0.0) || v > kMaxSpread) {
    throw std::invalid_argument(std::string(name) + ": must be a finite number in (0, " + num(kMaxSpread) +
                                "] cells, got " + num(v));
  }
}

void check_visits(double visits, const char* what) {
  if (visits > kMaxRenderVisits) {
    throw std::invalid_argument(std::string("keypoints: rendering would visit ") + num(visits) + " cells (" + what +
                                "), more than the limit of " + num(kMaxRenderVisits) +
                                "; render fewer persons or a smaller map");
  }
}

void check_common(const KeypointsView& kp, std::ptrdiff_t height, std::ptrdiff_t width, std::ptrdiff_t channels,
                  double stride) {
  if (kp.keypoints < 1 || kp.persons < 0 || (kp.persons > 0 && kp.data == nullptr)) {
    throw std::invalid_argument("keypoints: expected shape (M, N, 3) with N >= 1, got (" +
                                std::to_string(kp.persons) + ", " + std::to_string(kp.keypoints) + ", 3)");
  }
  const std::ptrdiff_t values = kp.persons * kp.keypoints * 3;
  for (std::ptrdiff_t i = 0; i < values; ++i) {
    if (!std::isfinite(kp.data[i])) {
      throw std::invalid_argument("keypoints: holds NaN or infinite values (flat index " + std::to_string(i) + ")");
    }
  }
  for (std::ptrdiff_t m = 0; m < kp.persons; ++m) {
    for (std::ptrdiff_t n = 0; n < kp.keypoints; ++n) {
      if (kp.visible(m, n) && !(std::abs(kp.x(m, n)) <= kMaxCoordinate && std::abs(kp.y(m, n)) <= kMaxCoordinate)) {
        throw std::invalid_argument("keypoints: x and y must be within +-" + num(kMaxCoordinate) +
                                    " input pixels, got (" + num(kp.x(m, n)) + ", " + num(kp.y(m, n)) +
                                    ") at person " + std::to_string(m) + ", keypoint " + std::to_string(n));
      }
    }
  }
  if (height < 1 || width < 1 || height > kMaxMapSide || width > kMaxMapSide) {
    throw std::invalid_argument("height, width: each must be in 1.." + std::to_string(kMaxMapSide) + ", got " +
                                std::to_string(height) + " x " + std::to_string(width));
  }
  if (height * width > kMaxMapElements / std::max<std::ptrdiff_t>(channels, 1)) {
    throw std::invalid_argument("height x width x channels: " + std::to_string(height) + " x " +
                                std::to_string(width) + " x " + std::to_string(channels) + " is more than " +
                                std::to_string(kMaxMapElements) + " elements");
  }
  if (height * width > kMaxMapCells) {
    throw std::invalid_argument("height x width: " + std::to_string(height) + " x " + std::to_string(width) +
                                " cells exceed the limit of " + std::to_string(kMaxMapCells) +
                                " cells per channel (what the decoder reads)");
  }
  if (!std::isfinite(stride) || !(kMinStride <= stride && stride <= kMaxStride)) {
    throw std::invalid_argument("stride: must be a finite number in [" + num(kMinStride) + ", " + num(kMaxStride) +
                                "], got " + num(stride));
  }
}

// The cells [lo, hi] (clamped to [0, size - 1]) whose index lies within `reach` of `centre`;
// lo > hi when none. Clamping happens in double so a far-away keypoint cannot overflow the cast.
void cell_range(double centre, double reach, std::ptrdiff_t size, std::ptrdiff_t& lo, std::ptrdiff_t& hi) {
  const double a = std::max(0.0, std::floor(centre - reach));
  const double b = std::min(static_cast<double>(size - 1), std::ceil(centre + reach));
  if (a > b) {
    lo = 1;
    hi = 0;
    return;
  }
  lo = static_cast<std::ptrdiff_t>(a);
  hi = static_cast<std::ptrdiff_t>(b);
}

// How many cells of [0, size - 1] lie within `reach` of `centre` (as cell_range bounds them).
double range_cells(double centre, double reach, std::ptrdiff_t size) {
  std::ptrdiff_t lo, hi;
  cell_range(centre, reach, size, lo, hi);
  return hi >= lo ? static_cast<double>(hi - lo + 1) : 0.0;
}

// The box a limb's band touches, as render_pafs bounds it: (rows, cols) centre and reach.
struct Band {
  double ua, wa, ub, wb;
  bool drawn;
};

Band band(const KeypointsView& kp, std::ptrdiff_t m, std::int32_t a, std::int32_t b, double stride) {
  Band r{};
  if (!kp.visible(m, a) || !kp.visible(m, b)) return r;
  r.ua = to_map(kp.x(m, a), stride);
  r.wa = to_map(kp.y(m, a), stride);
  r.ub = to_map(kp.x(m, b), stride);
  r.wb = to_map(kp.y(m, b), stride);
  const double du = r.ub - r.ua, dw = r.wb - r.wa;
  r.drawn = std::sqrt(du * du + dw * dw) > 1e-6;
  return r;
}

void fill_zero(const MutMapView& out) {
  for (std::ptrdiff_t i = 0; i < out.height; ++i)
    for (std::ptrdiff_t j = 0; j < out.width; ++j)
      for (std::ptrdiff_t c = 0; c < out.channels; ++c) out.at(i, j, c) = 0.0f;
}

}  // namespace

void check_render_heatmaps(const KeypointsView& keypoints, std::ptrdiff_t height, std::ptrdiff_t width,
                           double stride, double sigma) {
  check_common(keypoints, height, width, keypoints.keypoints + 1, stride);
  check_spread("sigma", sigma);
  const double reach = std::sqrt(kGaussianCutoff * 2.0 * sigma * sigma);
  double visits = 0.0;
  for (std::ptrdiff_t m = 0; m < keypoints.persons; ++m) {
    for (std::ptrdiff_t c = 0; c < keypoints.keypoints; ++c) {
      if (!keypoints.visible(m, c)) continue;
      visits += range_cells(to_map(keypoints.y(m, c), stride), reach, height) *
                range_cells(to_map(keypoints.x(m, c), stride), reach, width);
    }
  }
  check_visits(visits, "persons x keypoints x the cells each Gaussian reaches");
}

void check_render_pafs(const KeypointsView& keypoints, const std::int32_t* limbs, std::ptrdiff_t num_limbs,
                       std::ptrdiff_t height, std::ptrdiff_t width, double stride, double width_cells) {
  if (num_limbs < 1 || limbs == nullptr) {
    throw std::invalid_argument("limbs: expected shape (K, 4) with K >= 1");
  }
  check_common(keypoints, height, width, 2 * num_limbs, stride);
  check_spread("width", width_cells);
  std::vector<bool> channel_used(static_cast<std::size_t>(2 * num_limbs), false);
  for (std::ptrdiff_t k = 0; k < num_limbs; ++k) {
    const std::int32_t* row = limbs + 4 * k;
    const std::string which = "limbs[" + std::to_string(k) + "]";
    if (row[0] < 0 || row[0] >= keypoints.keypoints || row[1] < 0 || row[1] >= keypoints.keypoints ||
        row[0] == row[1]) {
      throw std::invalid_argument(which + ": ends must be two different keypoints in 0.." +
                                  std::to_string(keypoints.keypoints - 1));
    }
    for (int c = 2; c < 4; ++c) {
      if (row[c] < 0 || row[c] >= 2 * num_limbs || channel_used[static_cast<std::size_t>(row[c])]) {
        throw std::invalid_argument(which + ": PAF channels must use each of 0.." + std::to_string(2 * num_limbs - 1) +
                                    " exactly once");
      }
      channel_used[static_cast<std::size_t>(row[c])] = true;
    }
  }
  double visits = 0.0;
  for (std::ptrdiff_t k = 0; k < num_limbs; ++k) {
    for (std::ptrdiff_t m = 0; m < keypoints.persons; ++m) {
      const Band b = band(keypoints, m, limbs[4 * k], limbs[4 * k + 1], stride);
      if (!b.drawn) continue;
      visits += range_cells(0.5 * (b.wa + b.wb), 0.5 * std::abs(b.wb - b.wa) + width_cells, height) *
                range_cells(0.5 * (b.ua + b.ub), 0.5 * std::abs(b.ub - b.ua) + width_cells, width);
    }
  }
  check_visits(visits, "persons x limbs x the cells each band covers");
}

void render_heatmaps(const KeypointsView& keypoints, double stride, double sigma, const MutMapView& out) {
  const std::ptrdiff_t n = keypoints.keypoints;
  check_render_heatmaps(keypoints, out.height, out.width, stride, sigma);
  if (out.channels != n + 1) throw std::invalid_argument("out: expected N + 1 channels");
  fill_zero(out);
  const double two_sigma2 = 2.0 * sigma * sigma;
  const double reach = std::sqrt(kGaussianCutoff * two_sigma2);  // exponent == cutoff at this distance
  for (std::ptrdiff_t m = 0; m < keypoints.persons; ++m) {
    for (std::ptrdiff_t c = 0; c < n; ++c) {
      if (!keypoints.visible(m, c)) continue;
      const double u = to_map(keypoints.x(m, c), stride);
      const double w = to_map(keypoints.y(m, c), stride);
      std::ptrdiff_t i0, i1, j0, j1;
      cell_range(w, reach, out.height, i0, i1);
      cell_range(u, reach, out.width, j0, j1);
      for (std::ptrdiff_t i = i0; i <= i1; ++i) {
        for (std::ptrdiff_t j = j0; j <= j1; ++j) {
          const double du = u - static_cast<double>(j);
          const double dw = w - static_cast<double>(i);
          const double exponent = (du * du + dw * dw) / two_sigma2;
          if (exponent > kGaussianCutoff) continue;  // the box is a bound; this test decides
          float& cell = out.at(i, j, c);
          cell = std::max(cell, static_cast<float>(std::exp(-exponent)));
        }
      }
    }
  }
  for (std::ptrdiff_t i = 0; i < out.height; ++i) {
    for (std::ptrdiff_t j = 0; j < out.width; ++j) {
      float peak = 0.0f;
      for (std::ptrdiff_t c = 0; c < n; ++c) peak = std::max(peak, out.at(i, j, c));
      out.at(i, j, n) = static_cast<float>(std::max(0.0, 1.0 - static_cast<double>(peak)));
    }
  }
}

void render_pafs(const KeypointsView& keypoints, const std::int32_t* limbs, std::ptrdiff_t num_limbs,
                 double stride, double width_cells, const MutMapView& out) {
  check_render_pafs(keypoints, limbs, num_limbs, out.height, out.width, stride, width_cells);
  if (out.channels != 2 * num_limbs) throw std::invalid_argument("out: expected 2K channels");
  fill_zero(out);
  const std::size_t cells = static_cast<std::size_t>(out.height * out.width);
  // Per-limb scratch: the sum of unit vectors and the number of persons covering each cell.
  std::vector<double> sum_x(cells), sum_y(cells);
  std::vector<int> count(cells);
  const double width2 = width_cells * width_cells;
  for (std::ptrdiff_t k = 0; k < num_limbs; ++k) {
    const std::int32_t a = limbs[4 * k], b = limbs[4 * k + 1], cx = limbs[4 * k + 2], cy = limbs[4 * k + 3];
    std::fill(sum_x.begin(), sum_x.end(), 0.0);
    std::fill(sum_y.begin(), sum_y.end(), 0.0);
    std::fill(count.begin(), count.end(), 0);
    bool any = false;
    for (std::ptrdiff_t m = 0; m < keypoints.persons; ++m) {
      const Band band_m = band(keypoints, m, a, b, stride);
      if (!band_m.drawn) continue;
      const double ua = band_m.ua, wa = band_m.wa, ub = band_m.ub, wb = band_m.wb;
      const double du = ub - ua, dw = wb - wa;
      const double length2 = du * du + dw * dw;
      const double length = std::sqrt(length2);
      const double ex = du / length, ey = dw / length;
      std::ptrdiff_t i0, i1, j0, j1;
      cell_range(0.5 * (wa + wb), 0.5 * std::abs(dw) + width_cells, out.height, i0, i1);
      cell_range(0.5 * (ua + ub), 0.5 * std::abs(du) + width_cells, out.width, j0, j1);
      for (std::ptrdiff_t i = i0; i <= i1; ++i) {
        for (std::ptrdiff_t j = j0; j <= j1; ++j) {
          const double ci = static_cast<double>(i), cj = static_cast<double>(j);
          // Distance from the cell centre to the segment, ends included: project on the line,
          // clamp the parameter to [0, 1], measure to that point.
          const double t = std::min(1.0, std::max(0.0, ((cj - ua) * du + (ci - wa) * dw) / length2));
          const double ox = cj - (ua + t * du), oy = ci - (wa + t * dw);
          if (ox * ox + oy * oy > width2) continue;
          const std::size_t idx = static_cast<std::size_t>(i * out.width + j);
          sum_x[idx] += ex;
          sum_y[idx] += ey;
          count[idx] += 1;
          any = true;
        }
      }
    }
    if (!any) continue;
    for (std::ptrdiff_t i = 0; i < out.height; ++i) {
      for (std::ptrdiff_t j = 0; j < out.width; ++j) {
        const std::size_t idx = static_cast<std::size_t>(i * out.width + j);
        if (count[idx] == 0) continue;
        out.at(i, j, cx) = static_cast<float>(sum_x[idx] / count[idx]);
        out.at(i, j, cy) = static_cast<float>(sum_y[idx] / count[idx]);
      }
    }
  }
}

}  // namespace edgepose
