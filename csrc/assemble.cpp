// Assembly: grow persons from matched limbs, then filter, score and order them
// (docs/decoder.md, sections 4 and 5).
#include "assemble.hpp"

#include <algorithm>
#include <cmath>

namespace edgepose {

Assembler::Assembler(std::int32_t num_keypoints, std::int32_t max_peaks, std::size_t max_connections)
    : n_(num_keypoints), max_peaks_(max_peaks) {
  // Every person is created by a connection or (rule 4.5) from one peak, which bounds their number.
  const std::size_t max_persons = max_connections + static_cast<std::size_t>(n_) * static_cast<std::size_t>(max_peaks_);
  slots_.reserve(max_persons * static_cast<std::size_t>(n_));
  total_.reserve(max_persons);
  parts_.reserve(max_persons);
  alive_.reserve(max_persons);
  order_.reserve(max_persons);
  score_.reserve(max_persons);
  owner_.assign(static_cast<std::size_t>(n_) * static_cast<std::size_t>(max_peaks_), -1);
}

std::int32_t Assembler::add_person(std::int32_t kp, std::int32_t id, double total) {
  const auto p = static_cast<std::int32_t>(total_.size());
  slots_.insert(slots_.end(), static_cast<std::size_t>(n_), -1);
  slots(p)[kp] = id;
  owner(kp, id) = p;
  total_.push_back(total);
  parts_.push_back(1);
  alive_.push_back(1);
  return p;
}

void Assembler::assemble(std::vector<Connection>& conns, const std::vector<Limb>& limbs,
                         const std::vector<std::vector<Peak>>& peaks, const AssemblyParams& prm, Result& out) {
  slots_.clear();
  total_.clear();
  parts_.clear();
  alive_.clear();
  std::fill(owner_.begin(), owner_.end(), -1);

  if (prm.order == AssemblyOrder::Score) {
    std::sort(conns.begin(), conns.end(), [](const Connection& c1, const Connection& c2) {
      if (c1.key != c2.key) return c1.key > c2.key;
      if (c1.limb != c2.limb) return c1.limb < c2.limb;
      if (c1.a != c2.a) return c1.a < c2.a;
      return c1.b < c2.b;
    });
  }

  for (const Connection& c : conns) {
    const Limb& limb = limbs[c.limb];
    const std::int32_t a = limb.from, b = limb.to;
    const double sa = peaks[a][c.a].score, sb = peaks[b][c.b].score;
    // A peak belongs to at most one person (the rules below never give one peak to two), so the
    // owner table finds "the persons whose slot a is A or whose slot b is B" in O(1).
    std::int32_t p1 = owner(a, c.a), p2 = owner(b, c.b);
    if (p1 < 0 || p1 == p2) std::swap(p1, p2);  // p1: the found person if only one
    if (p1 >= 0 && p2 >= 0 && p1 != p2) {
      if (p1 > p2) std::swap(p1, p2);  // creation order
      if (!prm.merge) continue;
      std::int32_t* s1 = slots(p1);
      std::int32_t* s2 = slots(p2);
      bool disjoint = true;
      for (std::int32_t k = 0; k < n_; ++k) disjoint = disjoint && !(s1[k] >= 0 && s2[k] >= 0);
      if (!disjoint) continue;
      for (std::int32_t k = 0; k < n_; ++k) {
        if (s2[k] >= 0) {
          s1[k] = s2[k];
          owner(k, s2[k]) = p1;
          s2[k] = -1;
        }
      }
      parts_[p1] += parts_[p2];
      total_[p1] += total_[p2] + c.score;
      alive_[p2] = 0;
    } else if (p1 >= 0) {
      std::int32_t* s = slots(p1);
      if (s[b] < 0) {
        s[b] = c.b;
        owner(b, c.b) = p1;
        parts_[p1] += 1;
        total_[p1] += sb + c.score;
      } else if (s[a] < 0) {
        s[a] = c.a;
        owner(a, c.a) = p1;
        parts_[p1] += 1;
        total_[p1] += sa + c.score;
      }
    } else if (limb.starts_person) {
      const std::int32_t p = add_person(a, c.a, sa + sb + c.score);  // rule 4.4: a person of two parts
      slots(p)[b] = c.b;
      owner(b, c.b) = p;
      parts_[p] = 2;
    }
  }

  // Rule 4.5: when one part is enough, every peak that no person holds is a person of its own
  // (on ideal maps a person whose labelled keypoints share no limb is otherwise lost).
  if (prm.min_parts <= 1) {
    for (std::int32_t k = 0; k < n_; ++k) {
      const auto count = static_cast<std::int32_t>(peaks[k].size());
      for (std::int32_t id = 0; id < count; ++id) {
        if (owner(k, id) < 0) add_person(k, id, peaks[k][id].score);
      }
    }
  }

  // Section 5: filter, score, order, cap, write out.
  order_.clear();
  score_.assign(total_.size(), 0.0);
  for (std::size_t p = 0; p < total_.size(); ++p) {
    if (!alive_[p] || parts_[p] < prm.min_parts) continue;
    const double mean = total_[p] / parts_[p];
    if (!(mean >= prm.min_person_score)) continue;
    switch (prm.person_score) {
      case PersonScore::Mean: score_[p] = mean; break;
      case PersonScore::Tao: score_[p] = 1.0 - 1.0 / std::max(total_[p], kMinTaoTotal); break;
      case PersonScore::MeanParts:
        score_[p] = mean * std::pow(static_cast<double>(parts_[p]) / n_, prm.parts_exponent);
        break;
    }
    order_.push_back(static_cast<std::int32_t>(p));
  }
  std::stable_sort(order_.begin(), order_.end(), [this](std::int32_t p, std::int32_t q) { return score_[p] > score_[q]; });
  if (order_.size() > static_cast<std::size_t>(prm.max_persons)) order_.resize(static_cast<std::size_t>(prm.max_persons));

  const std::size_t m = order_.size();
  out.num_persons = static_cast<std::int32_t>(m);
  out.keypoints.assign(m * static_cast<std::size_t>(n_) * 3, 0.0f);
  out.scores.resize(m);
  for (std::size_t r = 0; r < m; ++r) {
    const std::int32_t p = order_[r];
    out.scores[r] = static_cast<float>(score_[p]);
    const std::int32_t* s = slots(p);
    float* kp = &out.keypoints[r * static_cast<std::size_t>(n_) * 3];
    for (std::int32_t k = 0; k < n_; ++k) {
      if (s[k] < 0) continue;
      const Peak& pk = peaks[k][s[k]];
      kp[3 * k] = static_cast<float>(pk.x);
      kp[3 * k + 1] = static_cast<float>(pk.y);
      kp[3 * k + 2] = static_cast<float>(pk.score);
    }
  }
}

}  // namespace edgepose
