// The pose decoder: heatmap + PAF of one image -> persons (docs/decoder.md, sections 0-5).
//
// Glossary: N keypoints, C = N + 1 heatmap channels (the last is background, never read),
// K limbs, 2K PAF channels, M persons, P peaks of one keypoint, H x W a map's size.
//
// Pipeline (one file per stage): peaks.* (NMS + sub-pixel) -> paf.* (limb candidates by PAF line
// integral, Cao et al. 2017) -> assignment.* (per-limb matching) -> assemble.* (persons).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "assemble.hpp"
#include "assignment.hpp"
#include "paf.hpp"
#include "peaks.hpp"
#include "view.hpp"

namespace edgepose {

// Mirrors edgepose/config.py's DecoderConfig field for field (the string choices as enums);
// the defaults are the same. validate() enforces the same ranges.
struct DecoderConfig {
  double peak_threshold = 0.05;
  int nms_radius = 2;
  Refine refine = Refine::Gaussian;
  int max_peaks = 128;
  int paf_samples = 10;
  double paf_sample_step = 0.0;
  int max_paf_samples = 25;
  double paf_threshold = 0.02;
  double min_sample_fraction = 0.7;
  LimbScore limb_score = LimbScore::Mean;
  double length_prior = 0.0;
  double min_limb_score = 0.0;
  Matching matching = Matching::Greedy;
  double peak_score_weight = 0.0;
  int nearest_partners = 8;
  AssemblyOrder assembly_order = AssemblyOrder::Limb;
  bool merge = true;
  int min_parts = 2;
  double min_person_score = 0.4;
  PersonScore person_score = PersonScore::MeanParts;
  double parts_exponent = 0.5;
  int max_persons = 100;

  // Throws std::invalid_argument naming the first field out of range.
  void validate() const;
};

// Limits that keep adversarial input bounded in time and memory (beyond max_peaks/max_persons);
// kMaxMapCells, kMinStride and kMaxStride (view.hpp) are shared with the renderer.
// Limb candidates are formed among at most this many of the strongest peaks of each end, so a
// limb costs at most kMaxLimbPeaks^2 PAF line integrals and the optimal matcher solves at most
// a kMaxLimbPeaks x kMaxLimbPeaks problem. Only max_peaks > kMaxLimbPeaks (a crowd of more than
// 128 people at one keypoint type) can reach it.
constexpr std::int32_t kMaxLimbPeaks = 128;


// True when every element of `map` is finite. A branch-free scan of the map's bytes (an OR of
// "exponent all ones" over every element); axes of stride 0 (np.broadcast_to) are read once.
bool all_finite(const MapView& map);

// Decodes the heatmap and PAF of one image at a time into persons.
//
// A Decoder owns all of its scratch: buffers are sized in the constructor from the caps and
// reused, so decoding frames allocates nothing once the first frame has been seen (beyond the
// caller's Result, whose capacity is reused too). It holds no global or static state: different
// Decoder objects may be used from different threads at once; one Decoder is not for concurrent
// use.
class Decoder {
 public:
  // limbs: K >= 1 limbs, each joining two different keypoints in 0..N-1 and reading PAF channels
  // in 0..2K-1. Throws std::invalid_argument on a bad topology or configuration.
  Decoder(std::vector<Limb> limbs, std::int32_t num_keypoints, const DecoderConfig& config);

  // Throws std::invalid_argument (naming "heatmap", "paf", "heatmap_stride" or "paf_stride")
  // unless the maps fit this decoder: heatmap (H, W, N + 1), paf (H_p, W_p, 2K), neither empty,
  // at most kMaxMapCells cells, strides finite and in [kMinStride, kMaxStride], and the two maps
  // covering the same input (H * heatmap_stride and H_p * paf_stride within one stride of the
  // coarser map, the same for W). Values are not checked here (see all_finite): it is O(1).
  void check_maps(const MapView& heat, const MapView& paf, double heatmap_stride, double paf_stride) const;

  // Decodes one image. Calls check_maps; the map values must be finite (NaN or inf cannot crash
  // the decoder, but give meaningless persons). Output in input pixels (section 0).
  void decode(const MapView& heat, const MapView& paf, double heatmap_stride, double paf_stride, Result& out);
  Result decode(const MapView& heat, const MapView& paf, double heatmap_stride, double paf_stride);

  std::int32_t num_keypoints() const { return n_; }
  std::int32_t num_limbs() const { return static_cast<std::int32_t>(limbs_.size()); }
  const DecoderConfig& config() const { return config_; }

 private:
  std::vector<Limb> limbs_;
  std::int32_t n_;
  DecoderConfig config_;
  PeakParams peak_params_;
  LimbParams limb_params_;
  AssemblyParams assembly_params_;

  // Scratch, reused across frames.
  std::vector<std::vector<Peak>> peaks_;     // per keypoint, strongest first
  std::vector<LimbCandidate> candidates_;    // one limb's candidates
  std::vector<std::pair<double, std::int32_t>> partners_;  // one peak's nearest partners
  std::vector<Connection> connections_;      // every limb's accepted connections
  Matcher matcher_;
  Assembler assembler_;
};

}  // namespace edgepose
