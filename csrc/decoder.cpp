// The pose decoder: heatmap + PAF of one image -> persons (docs/decoder.md, sections 0-5).
#include "decoder.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <utility>

namespace edgepose {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// Six significant digits, as Python's format(v, "g") writes them (1e-30 stays 1e-30, not 0).
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

bool finite(double v) { return std::isfinite(v); }

// ORs "is not finite" over every element of the strided box, reading each memory location once
// per non-zero-stride axis. The inner loop has no branches: for float32 the exponent field
// (bits 23-30) is all ones exactly for inf and NaN; for float16 bits 10-14.
template <typename Bits, Bits kExpMask>
bool any_nonfinite(const Bits* data, std::array<std::pair<std::ptrdiff_t, std::ptrdiff_t>, 3> axes) {
  for (auto& ax : axes) {
    if (ax.second == 0) ax.first = std::min<std::ptrdiff_t>(ax.first, 1);  // broadcast axis: read once
  }
  // Outermost = largest |stride|, so the inner loop walks memory as closely as the layout allows.
  std::sort(axes.begin(), axes.end(),
            [](const auto& x, const auto& y) { return std::llabs(x.second) > std::llabs(y.second); });
  unsigned bad = 0;
  if (axes[2].second == 1 && axes[1].second == axes[2].first && axes[0].second == axes[1].first * axes[2].first) {
    // Contiguous (the usual case): one flat pass with a unit stride, which the compiler vectorises.
    const std::ptrdiff_t n = axes[0].first * axes[1].first * axes[2].first;
    for (std::ptrdiff_t k = 0; k < n; ++k) bad |= static_cast<unsigned>((data[k] & kExpMask) == kExpMask);
    return bad != 0;
  }
  for (std::ptrdiff_t i = 0; i < axes[0].first; ++i) {
    for (std::ptrdiff_t j = 0; j < axes[1].first; ++j) {
      const Bits* row = data + i * axes[0].second + j * axes[1].second;
      const std::ptrdiff_t n = axes[2].first, s = axes[2].second;
      for (std::ptrdiff_t k = 0; k < n; ++k) bad |= static_cast<unsigned>((row[k * s] & kExpMask) == kExpMask);
    }
  }
  return bad != 0;
}

void check_map(const MapView& m, const char* name, std::ptrdiff_t want_channels, const char* what) {
  require(m.data != nullptr || m.height * m.width * m.channels == 0, std::string(name) + ": no data");
  require(m.height > 0 && m.width > 0,
          std::string(name) + ": empty map (H x W = " + std::to_string(m.height) + " x " + std::to_string(m.width) +
              "); both must be at least 1");
  require(m.channels == want_channels, std::string(name) + ": expected " + std::to_string(want_channels) +
                                           " channels (" + what + "), got " + std::to_string(m.channels));
  require(m.height * m.width <= kMaxMapCells,
          std::string(name) + ": " + std::to_string(m.height) + " x " + std::to_string(m.width) +
              " cells exceed the limit of " + std::to_string(kMaxMapCells) + " cells per channel");
}

// The constructor's arguments, checked before any buffer is sized from them.
const DecoderConfig& validated(const DecoderConfig& config) {
  config.validate();
  return config;
}

std::int32_t checked_keypoints(std::int32_t n) {
  require(1 <= n && n <= 1024, "num_keypoints must be in 1..1024, got " + std::to_string(n));
  return n;
}

}  // namespace

void DecoderConfig::validate() const {
  const std::pair<const char*, double> finite_fields[] = {
      {"peak_threshold", peak_threshold}, {"paf_sample_step", paf_sample_step},
      {"paf_threshold", paf_threshold},   {"min_sample_fraction", min_sample_fraction},
      {"length_prior", length_prior},     {"min_limb_score", min_limb_score},
      {"peak_score_weight", peak_score_weight}, {"min_person_score", min_person_score},
      {"parts_exponent", parts_exponent}};
  for (const auto& f : finite_fields) {
    require(finite(f.second), std::string("config: ") + f.first + " must be a finite number, got " + num(f.second));
  }
  require(peak_threshold >= 0.0, "config: peak_threshold must be >= 0 (a peak's score is > 0), got " + num(peak_threshold));
  require(0 <= nms_radius && nms_radius <= 8, "config: nms_radius must be in 0..8, got " + std::to_string(nms_radius));
  require(1 <= max_peaks && max_peaks <= 1024, "config: max_peaks must be in 1..1024, got " + std::to_string(max_peaks));
  require(2 <= paf_samples && paf_samples <= 256,
          "config: paf_samples must be in 2..256, got " + std::to_string(paf_samples));
  require(paf_samples <= max_paf_samples && max_paf_samples <= 256,
          "config: max_paf_samples must be in paf_samples..256, got " + std::to_string(max_paf_samples));
  require(paf_sample_step >= 0.0, "config: paf_sample_step must be >= 0, got " + num(paf_sample_step));
  require(0.0 <= min_sample_fraction && min_sample_fraction <= 1.0,
          "config: min_sample_fraction must be in [0, 1], got " + num(min_sample_fraction));
  require(length_prior >= 0.0, "config: length_prior must be >= 0, got " + num(length_prior));
  require(0.0 <= parts_exponent && parts_exponent <= 4.0,
          "config: parts_exponent must be in [0, 4], got " + num(parts_exponent));
  require(0 <= nearest_partners && nearest_partners <= 1024,
          "config: nearest_partners must be in 0..1024, got " + std::to_string(nearest_partners));
  require(min_parts >= 1, "config: min_parts must be >= 1, got " + std::to_string(min_parts));
  require(1 <= max_persons && max_persons <= 10000,
          "config: max_persons must be in 1..10000, got " + std::to_string(max_persons));
}

bool all_finite(const MapView& m) {
  const std::array<std::pair<std::ptrdiff_t, std::ptrdiff_t>, 3> axes = {
      {{m.height, m.stride_h}, {m.width, m.stride_w}, {m.channels, m.stride_c}}};
  if (m.height <= 0 || m.width <= 0 || m.channels <= 0) return true;
  if (m.dtype == DType::F32) {
    return !any_nonfinite<std::uint32_t, 0x7F800000u>(static_cast<const std::uint32_t*>(m.data), axes);
  }
  return !any_nonfinite<std::uint16_t, 0x7C00u>(static_cast<const std::uint16_t*>(m.data), axes);
}

Decoder::Decoder(std::vector<Limb> limbs, std::int32_t num_keypoints, const DecoderConfig& config)
    : limbs_(std::move(limbs)),
      n_(checked_keypoints(num_keypoints)),
      config_(validated(config)),
      assembler_(n_, config_.max_peaks, limbs_.size() * static_cast<std::size_t>(std::min(config_.max_peaks, kMaxLimbPeaks))) {
  require(!limbs_.empty(), "limbs: need at least one limb");
  const auto K = static_cast<std::int32_t>(limbs_.size());
  for (std::int32_t k = 0; k < K; ++k) {
    const Limb& l = limbs_[k];
    const std::string where = "limbs: row " + std::to_string(k) + " ";
    require(0 <= l.from && l.from < n_ && 0 <= l.to && l.to < n_ && l.from != l.to,
            where + "joins keypoints (" + std::to_string(l.from) + ", " + std::to_string(l.to) +
                "), expected two different keypoints in 0.." + std::to_string(n_ - 1));
    require(0 <= l.paf_x && l.paf_x < 2 * K && 0 <= l.paf_y && l.paf_y < 2 * K,
            where + "uses PAF channels (" + std::to_string(l.paf_x) + ", " + std::to_string(l.paf_y) +
                "), expected channels in 0.." + std::to_string(2 * K - 1));
  }
  peak_params_ = {config_.peak_threshold, config_.nms_radius, config_.refine, config_.max_peaks};
  limb_params_.samples = config_.paf_samples;
  limb_params_.sample_step = config_.paf_sample_step;
  limb_params_.max_samples = config_.max_paf_samples;
  limb_params_.paf_threshold = config_.paf_threshold;
  limb_params_.min_sample_fraction = config_.min_sample_fraction;
  limb_params_.score_mode = config_.limb_score;
  limb_params_.length_prior = config_.length_prior;
  limb_params_.min_limb_score = config_.min_limb_score;
  limb_params_.peak_score_weight = config_.peak_score_weight;
  limb_params_.nearest_partners = config_.nearest_partners;
  assembly_params_ = {config_.assembly_order, config_.merge,      config_.min_parts,
                      config_.min_person_score, config_.person_score, config_.parts_exponent,
                      config_.max_persons};

  // Scratch at its bounds up front: steady-state decoding never grows it.
  const auto limb_peaks = static_cast<std::size_t>(std::min(config_.max_peaks, kMaxLimbPeaks));
  peaks_.resize(static_cast<std::size_t>(n_));
  for (auto& p : peaks_) p.reserve(static_cast<std::size_t>(config_.max_peaks));
  candidates_.reserve(limb_peaks * limb_peaks);
  partners_.reserve(limb_peaks);
  connections_.reserve(limbs_.size() * limb_peaks);
}

void Decoder::check_maps(const MapView& heat, const MapView& paf, double heatmap_stride, double paf_stride) const {
  for (const auto& [name, s] : {std::pair<const char*, double>{"heatmap_stride", heatmap_stride},
                                std::pair<const char*, double>{"paf_stride", paf_stride}}) {
    require(finite(s) && kMinStride <= s && s <= kMaxStride,
            std::string(name) + " must be a positive finite number of input pixels per cell in [" + num(kMinStride) +
                ", " + num(kMaxStride) + "], got " + num(s));
  }
  check_map(heat, "heatmap", n_ + 1, "N keypoints + background");
  check_map(paf, "paf", 2 * num_limbs(), "2 x K limbs");
  // Both maps cover the same input image: their extents may differ by the rounding of one output
  // size (at most one cell of the coarser map), not more.
  const double tol = std::max(heatmap_stride, paf_stride) * (1.0 + 1e-9);
  const double hh = static_cast<double>(heat.height) * heatmap_stride, hw = static_cast<double>(heat.width) * heatmap_stride;
  const double ph = static_cast<double>(paf.height) * paf_stride, pw = static_cast<double>(paf.width) * paf_stride;
  require(std::abs(hh - ph) <= tol && std::abs(hw - pw) <= tol,
          "paf_stride does not fit the maps: heatmap " + std::to_string(heat.height) + " x " +
              std::to_string(heat.width) + " cells at stride " + num(heatmap_stride) + " cover " + num(hh) + " x " +
              num(hw) + " input pixels, paf " + std::to_string(paf.height) + " x " + std::to_string(paf.width) +
              " cells at stride " + num(paf_stride) + " cover " + num(ph) + " x " + num(pw) +
              "; both must describe the same image (within one cell)");
}

void Decoder::decode(const MapView& heat, const MapView& paf, double heatmap_stride, double paf_stride,
                     Result& out) {
  check_maps(heat, paf, heatmap_stride, paf_stride);

  find_all_peaks(heat, n_, heatmap_stride, peak_params_, peaks_);

  const double input_height = static_cast<double>(heat.height) * heatmap_stride;
  connections_.clear();
  for (std::int32_t k = 0; k < num_limbs(); ++k) {
    const Limb& limb = limbs_[k];
    const auto& pa = peaks_[limb.from];
    const auto& pb = peaks_[limb.to];
    // Peaks are strongest first, so the cap keeps the strongest of each end.
    const auto na = static_cast<std::int32_t>(std::min<std::size_t>(pa.size(), kMaxLimbPeaks));
    const auto nb = static_cast<std::int32_t>(std::min<std::size_t>(pb.size(), kMaxLimbPeaks));
    if (na == 0 || nb == 0) continue;
    candidates_.clear();
    const LimbField field{paf, limb.paf_x, limb.paf_y, paf_stride};
    score_limb(field, pa.data(), na, pb.data(), nb, input_height, limb_params_, partners_, candidates_);
    matcher_.match(config_.matching, candidates_, na, nb, k, connections_);
  }
  assembler_.assemble(connections_, limbs_, peaks_, assembly_params_, out);
}

Result Decoder::decode(const MapView& heat, const MapView& paf, double heatmap_stride, double paf_stride) {
  Result r;
  decode(heat, paf, heatmap_stride, paf_stride, r);
  return r;
}

}  // namespace edgepose
