// Per-limb bipartite matching of limb candidates (docs/decoder.md, section 3).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "paf.hpp"

namespace edgepose {

// DecoderConfig.matching.
enum class Matching : std::uint8_t { Greedy, Optimal };

// An accepted connection of one limb: peak ids, limb score, matching key, and the limb's index.
struct Connection {
  std::int32_t a = 0, b = 0;
  double score = 0.0;
  double key = 0.0;
  std::int32_t limb = 0;
};

// "c1 before c2" in the order of section 3: descending key, then A id, then B id.
bool key_order(const Connection& c1, const Connection& c2);

// Matches one limb's candidates. Owns its scratch (reused across calls; it grows to the largest
// problem seen and then stays), so one Matcher serves every limb and frame of one Decoder.
class Matcher {
 public:
  // Appends to `out` the accepted connections of limb `limb`, in key order. `cands` is the
  // limb's candidate list (ids < na for `from`, < nb for `to`); it is reordered in place.
  void match(Matching mode, std::vector<LimbCandidate>& cands, std::int32_t na, std::int32_t nb, std::int32_t limb,
             std::vector<Connection>& out);

  // Maximum-weight bipartite matching of a dense nr x nc row-major weight matrix: among the pairs
  // whose weight is >= min_weight (which must be > 0), a matching of maximum total weight. Fills
  // `out` with its (row, column) pairs in ascending row order. Rows and columns may be unequal in
  // number (either side larger); the same solver as `optimal` (the tracker's association).
  void assign(const double* weights, std::int32_t nr, std::int32_t nc, double min_weight,
              std::vector<std::pair<std::int32_t, std::int32_t>>& out);

 private:
  void greedy(std::vector<LimbCandidate>& cands, std::int32_t na, std::int32_t nb, std::int32_t limb,
              std::vector<Connection>& out);
  void optimal(const std::vector<LimbCandidate>& cands, std::int32_t na, std::int32_t nb, std::int32_t limb,
               std::vector<Connection>& out);
  // Minimum-cost assignment of every row of the nr x nc (nr <= nc) matrix cost_ to a distinct
  // column; fills col4row_.
  void solve_rectangular(std::int32_t nr, std::int32_t nc);

  std::vector<std::uint8_t> used_a_, used_b_;  // greedy: peaks already taken for this limb
  std::vector<std::int32_t> cand_at_;          // optimal: candidate index of (a, b), -1 for none
  std::vector<double> cost_;                   // optimal: row-major cost matrix
  // Shortest augmenting path state (Crouse 2016): duals, path tree, labels, matching.
  std::vector<double> u_, v_, shortest_;
  std::vector<std::int32_t> path_, col4row_, row4col_, remaining_;
  std::vector<std::uint8_t> sr_, sc_;
};

}  // namespace edgepose
