// Assembly: grow persons from matched limbs, then filter, score and order them
// (docs/decoder.md, sections 4 and 5).
#pragma once

#include <cstdint>
#include <vector>

#include "assignment.hpp"
#include "peaks.hpp"

namespace edgepose {

// DecoderConfig.assembly_order and DecoderConfig.person_score.
enum class AssemblyOrder : std::uint8_t { Limb, Score };
enum class PersonScore : std::uint8_t { Mean, Tao, MeanParts };

// A limb of the topology: keypoints from -> to, PAF channels, and whether it may start a person.
struct Limb {
  std::int32_t from = 0, to = 0;
  std::int32_t paf_x = 0, paf_y = 0;
  bool starts_person = true;
};

// `tao` person score = 1 - 1 / max(total, kMinTaoTotal): finite (>= -999999) for any total.
constexpr double kMinTaoTotal = 1e-6;

// What assembly needs from the decoder's configuration.
struct AssemblyParams {
  AssemblyOrder order = AssemblyOrder::Limb;
  bool merge = true;
  int min_parts = 2;
  double min_person_score = 0.4;
  PersonScore person_score = PersonScore::MeanParts;
  double parts_exponent = 0.5;  // mean_parts: mean * (parts / N)^parts_exponent
  int max_persons = 100;
};

// One image's persons: keypoints (M, N, 3) row-major and scores (M,), best first.
struct Result {
  std::int32_t num_persons = 0;
  std::vector<float> keypoints;
  std::vector<float> scores;
};

// Grows persons from connections. Owns its scratch (person rows, a peak -> person index), sized
// in the constructor from the caps, so assembling a frame does not allocate.
class Assembler {
 public:
  // num_keypoints N, and the most peaks a keypoint type can have (max_peaks).
  Assembler(std::int32_t num_keypoints, std::int32_t max_peaks, std::size_t max_connections);

  // `conns`: every limb's accepted connections, limb by limb, each limb in key order (as the
  // Matcher appends them); reordered in place for AssemblyOrder::Score. `peaks[n]`: the peaks of
  // keypoint n. Writes the surviving persons to `out`.
  void assemble(std::vector<Connection>& conns, const std::vector<Limb>& limbs,
                const std::vector<std::vector<Peak>>& peaks, const AssemblyParams& params, Result& out);

 private:
  // Index of the person that holds peak `id` of keypoint `kp`, or -1.
  std::int32_t& owner(std::int32_t kp, std::int32_t id) {
    return owner_[static_cast<std::size_t>(kp) * static_cast<std::size_t>(max_peaks_) + id];
  }
  std::int32_t* slots(std::int32_t person) { return &slots_[static_cast<std::size_t>(person) * n_]; }
  // A new person of one part (peak `id` of keypoint `kp`) with score `total`; returns its index.
  std::int32_t add_person(std::int32_t kp, std::int32_t id, double total);

  std::int32_t n_;          // keypoints per person
  std::int32_t max_peaks_;  // peak ids per keypoint are < this
  // Persons in creation order; a merged-away person stays as a dead row so indices (and with
  // them creation order) never shift.
  std::vector<std::int32_t> slots_;  // (persons, N) peak ids, -1 = absent
  std::vector<double> total_;
  std::vector<std::int32_t> parts_;
  std::vector<std::uint8_t> alive_;
  std::vector<std::int32_t> owner_;  // (N, max_peaks): which person holds each peak
  std::vector<std::int32_t> order_;  // survivors, for sorting by score
  std::vector<double> score_;        // reported score per person
};

}  // namespace edgepose
