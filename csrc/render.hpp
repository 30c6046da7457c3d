// Ground-truth rendering: keypoints -> Gaussian heatmaps and unit-vector PAFs, the training
// targets of Cao et al. 2017 ("Realtime Multi-Person 2D Pose Estimation using Part Affinity
// Fields"). The rules are the "Rendering" section of docs/decoder.md; edgepose/_reference.py
// holds the numpy version the tests compare against.
//
// Glossary: M persons, N keypoints, K limbs, H x W the map's size, s the stride (input pixels per
// cell). Keypoints are (M, N, 3) row-major doubles (x, y, v) in input pixels, visible where v > 0.
#pragma once

#include <cstddef>
#include <cstdint>

#include "view.hpp"

namespace edgepose {

// A Gaussian is cut to 0 where its exponent exceeds ln(100), i.e. below 0.01 (beyond ~3.03 sigma),
// as OpenPose does; the numpy reference uses the same constant.
constexpr double kGaussianCutoff = 4.605170185988092;  // ln(100)

// Read-only (M, N, 3) keypoints: x, y, visibility per keypoint, rows contiguous.
struct KeypointsView {
  const double* data = nullptr;
  std::ptrdiff_t persons = 0;    // M
  std::ptrdiff_t keypoints = 0;  // N
  double x(std::ptrdiff_t m, std::ptrdiff_t n) const { return data[(m * keypoints + n) * 3]; }
  double y(std::ptrdiff_t m, std::ptrdiff_t n) const { return data[(m * keypoints + n) * 3 + 1]; }
  bool visible(std::ptrdiff_t m, std::ptrdiff_t n) const { return data[(m * keypoints + n) * 3 + 2] > 0.0; }
};

// The largest map either renderer writes: H and W each at most kMaxMapSide cells, H * W at most
// kMaxMapCells (what the decoder reads), at most kMaxMapElements floats (1 GiB) in all, so a typo
// in a size cannot ask for gigabytes or minutes.
constexpr std::ptrdiff_t kMaxMapSide = 1 << 16;
constexpr std::ptrdiff_t kMaxMapElements = std::ptrdiff_t{1} << 28;
// Visible keypoints lie within this many input pixels of the origin (their squares, in map cells at
// kMinStride, stay far from overflow, so every output value is finite).
constexpr double kMaxCoordinate = 1e7;
// sigma and the PAF band width, in cells, are at most this.
constexpr double kMaxSpread = 1e4;
// The cells one render may visit in all (sum over persons and keypoints / limbs of the box each
// touches, clipped to the map): a crowd of huge Gaussians or bands is refused up front.
constexpr double kMaxRenderVisits = double(std::int64_t{1} << 30);

// Throws std::invalid_argument naming the argument when the keypoints or sizes cannot be rendered:
// N < 1, M < 0, a non-finite value, a visible x or y beyond kMaxCoordinate, H or W outside
// 1..kMaxMapSide, more than kMaxMapCells cells or kMaxMapElements elements, a stride outside
// [kMinStride, kMaxStride], sigma outside (0, kMaxSpread], more than kMaxRenderVisits cell visits.
void check_render_heatmaps(const KeypointsView& keypoints, std::ptrdiff_t height, std::ptrdiff_t width,
                           double stride, double sigma);

// Same for the PAF renderer; `limbs` is (K, 4) int32 rows (from, to, paf_x, paf_y): ends in
// 0..N-1 and distinct, the 2K channels each used once; `width_cells` in (0, kMaxSpread].
void check_render_pafs(const KeypointsView& keypoints, const std::int32_t* limbs, std::ptrdiff_t num_limbs,
                       std::ptrdiff_t height, std::ptrdiff_t width, double stride, double width_cells);

// Writes every element of `out` (H, W, N + 1): channel c < N is the max over persons of the
// keypoint's Gaussian (sigma in cells), the last channel max(0, 1 - max_c). Validates first.
void render_heatmaps(const KeypointsView& keypoints, double stride, double sigma, const MutMapView& out);

// Writes every element of `out` (H, W, 2K): each cell within `width_cells` of a limb's segment
// (ends included) holds the unit vector from -> to, averaged over the persons covering it; 0
// elsewhere. Validates first.
void render_pafs(const KeypointsView& keypoints, const std::int32_t* limbs, std::ptrdiff_t num_limbs,
                 double stride, double width_cells, const MutMapView& out);

}  // namespace edgepose
