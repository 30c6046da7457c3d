// Limb candidates: the PAF line integral between two peaks (docs/decoder.md, section 2;
// Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part Affinity Fields", CVPR 2017).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "peaks.hpp"
#include "view.hpp"

namespace edgepose {

// How a candidate's limb score is formed from its projections (DecoderConfig.limb_score).
enum class LimbScore : std::uint8_t { Mean, MeanPassing };

// What score_limb needs from the decoder's configuration.
struct LimbParams {
  int samples = 10;               // paf_samples
  double sample_step = 0.0;       // paf_sample_step (0: always `samples`)
  int max_samples = 25;           // max_paf_samples
  double paf_threshold = 0.02;
  double min_sample_fraction = 0.7;
  LimbScore score_mode = LimbScore::Mean;
  double length_prior = 0.0;
  double min_limb_score = 0.0;
  double peak_score_weight = 0.0;
  int nearest_partners = 8;       // 0: every pair; else each A tries its nearest B peaks only
};

// A pair of peaks (ids into the two keypoints' peak lists) that passed the PAF test.
struct LimbCandidate {
  std::int32_t a = 0, b = 0;  // peak ids of the limb's `from` and `to` keypoints
  double score = 0.0;         // limb score
  double key = 0.0;           // matching key: score + peak_score_weight * (score_a + score_b)
};

// One limb's PAF: the map and its two channels.
struct LimbField {
  MapView paf;              // (H_p, W_p, 2K)
  std::ptrdiff_t cx = 0;    // channel of the x component
  std::ptrdiff_t cy = 0;    // channel of the y component
  double stride = 8.0;      // input pixels per PAF cell
};

// Appends to `out` (not cleared) the candidates of one limb between peaks `from` (na of them)
// and `to` (nb), in the order A outer, B inner. `input_height` is the heatmap height times its
// stride (the length prior's H_in). Pairs are rejected as soon as the samples left cannot reach
// the required passing count, so unrelated pairs usually cost 2-3 samples, not n.
// `partners` is caller-owned scratch (reserved to nb).
void score_limb(const LimbField& field, const Peak* from, std::ptrdiff_t na, const Peak* to, std::ptrdiff_t nb,
                double input_height, const LimbParams& params, std::vector<std::pair<double, std::int32_t>>& partners,
                std::vector<LimbCandidate>& out);

}  // namespace edgepose
