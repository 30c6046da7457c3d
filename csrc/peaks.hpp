// Peaks: per-channel non-maximum suppression and sub-pixel refinement (docs/decoder.md, section 1).
#pragma once

#include <cstdint>
#include <vector>

#include "view.hpp"

namespace edgepose {

// Sub-pixel refinement of a peak (DecoderConfig.refine).
enum class Refine : std::uint8_t { None, Centroid, Quadratic, Gaussian };

// What find_peaks needs from the decoder's configuration.
struct PeakParams {
  double threshold = 0.05;   // a peak's value must exceed this
  int nms_radius = 2;        // the peak is the maximum of its (2r+1) x (2r+1) window
  Refine refine = Refine::Gaussian;
  int max_peaks = 128;       // the strongest this many are kept
};

// One peak of one keypoint channel.
struct Peak {
  double x = 0.0, y = 0.0;   // position in input pixels (section 0)
  double score = 0.0;        // the cell's value
  std::int32_t row = 0, col = 0;  // the cell (i, j) in the heatmap
};

// The peaks of channel `channel` of `heat` (stride `stride` input pixels per cell), strongest
// first (ties: raster order), at most params.max_peaks of them, written to `out` (cleared first;
// its capacity is reused, so a caller that keeps `out` allocates nothing in steady state).
// Cost: O(H W (2r+1)^2) in the worst case, O(H W) for the usual map where few cells pass the
// threshold; memory: O(max_peaks) (a bounded heap, never one entry per cell).
void find_peaks(const MapView& heat, std::ptrdiff_t channel, double stride, const PeakParams& params,
                std::vector<Peak>& out);

// The peaks of channels 0..channels-1 into out[0..channels-1] (sized by the caller), the same as
// find_peaks channel by channel; an NHWC map is read once, in memory order.
void find_all_peaks(const MapView& heat, std::int32_t channels, double stride, const PeakParams& params,
                    std::vector<std::vector<Peak>>& out);

}  // namespace edgepose
