// Per-limb bipartite matching of limb candidates (docs/decoder.md, section 3).
#include "assignment.hpp"

#include <algorithm>
#include <limits>

namespace edgepose {

namespace {
// Section 3's order, for candidates and connections alike: descending key, then A id, then B id.
template <typename T>
bool by_key(const T& c1, const T& c2) {
  if (c1.key != c2.key) return c1.key > c2.key;
  if (c1.a != c2.a) return c1.a < c2.a;
  return c1.b < c2.b;
}
}  // namespace

bool key_order(const Connection& c1, const Connection& c2) { return by_key(c1, c2); }

namespace {

Connection to_connection(const LimbCandidate& c, std::int32_t limb) {
  Connection k;
  k.a = c.a;
  k.b = c.b;
  k.score = c.score;
  k.key = c.key;
  k.limb = limb;
  return k;
}
}  // namespace

void Matcher::match(Matching mode, std::vector<LimbCandidate>& cands, std::int32_t na, std::int32_t nb,
                    std::int32_t limb, std::vector<Connection>& out) {
  if (cands.empty()) return;
  if (mode == Matching::Greedy) {
    greedy(cands, na, nb, limb, out);
  } else {
    optimal(cands, na, nb, limb, out);
  }
}

void Matcher::greedy(std::vector<LimbCandidate>& cands, std::int32_t na, std::int32_t nb, std::int32_t limb,
                     std::vector<Connection>& out) {
  std::sort(cands.begin(), cands.end(), by_key<LimbCandidate>);
  used_a_.assign(static_cast<std::size_t>(na), 0);
  used_b_.assign(static_cast<std::size_t>(nb), 0);
  for (const LimbCandidate& c : cands) {
    if (used_a_[c.a] || used_b_[c.b]) continue;
    used_a_[c.a] = used_b_[c.b] = 1;
    out.push_back(to_connection(c, limb));  // accepted in key order already
  }
}

// Maximum-weight matching as a rectangular linear assignment. The cost of (a, b) is -key for a
// candidate with a positive key and 0 otherwise: 0 is "as good as leaving both unmatched", so a
// minimum-cost assignment of every row, restricted to its positive-key candidate pairs, is a
// matching of maximum total key (pairs without a candidate are never reported).
void Matcher::optimal(const std::vector<LimbCandidate>& cands, std::int32_t na, std::int32_t nb,
                      std::int32_t limb, std::vector<Connection>& out) {
  cand_at_.assign(static_cast<std::size_t>(na) * static_cast<std::size_t>(nb), -1);
  for (std::size_t i = 0; i < cands.size(); ++i) {
    cand_at_[static_cast<std::size_t>(cands[i].a) * nb + cands[i].b] = static_cast<std::int32_t>(i);
  }
  // Rows are the smaller side (the solver needs nr <= nc).
  const bool transposed = na > nb;
  const std::int32_t nr = transposed ? nb : na, nc = transposed ? na : nb;
  cost_.assign(static_cast<std::size_t>(nr) * static_cast<std::size_t>(nc), 0.0);
  for (const LimbCandidate& c : cands) {
    if (!(c.key > 0.0)) continue;
    const std::size_t r = static_cast<std::size_t>(transposed ? c.b : c.a);
    const std::size_t col = static_cast<std::size_t>(transposed ? c.a : c.b);
    cost_[r * nc + col] = -c.key;
  }
  solve_rectangular(nr, nc);
  const std::size_t first = out.size();
  for (std::int32_t r = 0; r < nr; ++r) {
    const std::int32_t col = col4row_[r];
    const std::int32_t a = transposed ? col : r, b = transposed ? r : col;
    const std::int32_t idx = cand_at_[static_cast<std::size_t>(a) * nb + b];
    if (idx < 0 || !(cands[idx].key > 0.0)) continue;
    out.push_back(to_connection(cands[idx], limb));
  }
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(), key_order);
}

// The same reduction as `optimal`: cost -w for an admissible pair (w >= min_weight > 0), 0 for the
// rest, so a minimum-cost assignment of every row of the smaller side, with its zero-cost pairs
// dropped, is a maximum-weight matching over the admissible pairs.
void Matcher::assign(const double* weights, std::int32_t nr, std::int32_t nc, double min_weight,
                     std::vector<std::pair<std::int32_t, std::int32_t>>& out) {
  out.clear();
  if (nr <= 0 || nc <= 0) return;
  const bool transposed = nr > nc;
  const std::int32_t r_n = transposed ? nc : nr, c_n = transposed ? nr : nc;
  const std::size_t C = static_cast<std::size_t>(nc);
  cost_.assign(static_cast<std::size_t>(r_n) * static_cast<std::size_t>(c_n), 0.0);
  for (std::int32_t r = 0; r < nr; ++r) {
    for (std::int32_t c = 0; c < nc; ++c) {
      const double w = weights[static_cast<std::size_t>(r) * C + c];
      if (!(w >= min_weight)) continue;
      const std::size_t rr = static_cast<std::size_t>(transposed ? c : r);
      const std::size_t cc = static_cast<std::size_t>(transposed ? r : c);
      cost_[rr * static_cast<std::size_t>(c_n) + cc] = -w;
    }
  }
  solve_rectangular(r_n, c_n);
  for (std::int32_t k = 0; k < r_n; ++k) {
    const std::int32_t r = transposed ? col4row_[k] : k, c = transposed ? k : col4row_[k];
    if (weights[static_cast<std::size_t>(r) * C + c] >= min_weight) out.emplace_back(r, c);
  }
  if (transposed) std::sort(out.begin(), out.end());
}

// Shortest augmenting path algorithm for the rectangular linear sum assignment problem
// (D. F. Crouse, "On implementing 2D rectangular assignment algorithms", IEEE Trans. Aerospace
// and Electronic Systems 52(4), 2016; the Jonker-Volgenant family). Each row in turn is joined
// to the matching by a Dijkstra-like search over reduced costs cost - u - v; the duals u, v keep
// every reduced cost >= 0, which is what makes the greedy choice of the cheapest column safe.
// O(nr^2 nc) time; all costs here are finite, so every row is always assignable.
void Matcher::solve_rectangular(std::int32_t nr, std::int32_t nc) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const std::size_t R = static_cast<std::size_t>(nr), C = static_cast<std::size_t>(nc);
  u_.assign(R, 0.0);
  v_.assign(C, 0.0);
  shortest_.resize(C);
  path_.resize(C);
  col4row_.assign(R, -1);
  row4col_.assign(C, -1);
  remaining_.resize(C);
  sr_.resize(R);
  sc_.resize(C);

  for (std::int32_t cur = 0; cur < nr; ++cur) {
    std::fill(shortest_.begin(), shortest_.end(), kInf);
    std::fill(sr_.begin(), sr_.end(), 0);
    std::fill(sc_.begin(), sc_.end(), 0);
    // Columns not yet reached, kept in reverse so ties prefer the lower column index.
    std::int32_t n_remaining = nc;
    for (std::int32_t k = 0; k < nc; ++k) remaining_[k] = nc - k - 1;

    double min_val = 0.0;
    std::int32_t sink = -1, i = cur;
    while (sink < 0) {
      sr_[i] = 1;
      std::int32_t best = -1;
      double lowest = kInf;
      for (std::int32_t k = 0; k < n_remaining; ++k) {
        const std::int32_t j = remaining_[k];
        const double r = min_val + cost_[static_cast<std::size_t>(i) * C + j] - u_[i] - v_[j];
        if (r < shortest_[j]) {
          path_[j] = i;
          shortest_[j] = r;
        }
        // Prefer an unassigned column on ties: it ends the search sooner.
        if (shortest_[j] < lowest || (shortest_[j] == lowest && row4col_[j] < 0)) {
          lowest = shortest_[j];
          best = k;
        }
      }
      min_val = lowest;
      const std::int32_t j = remaining_[best];
      if (row4col_[j] < 0) {
        sink = j;
      } else {
        i = row4col_[j];
      }
      sc_[j] = 1;
      remaining_[best] = remaining_[--n_remaining];
    }

    // Dual update keeps reduced costs non-negative and tight along the new matching.
    u_[cur] += min_val;
    for (std::int32_t r = 0; r < nr; ++r) {
      if (sr_[r] && r != cur) u_[r] += min_val - shortest_[col4row_[r]];
    }
    for (std::int32_t c = 0; c < nc; ++c) {
      if (sc_[c]) v_[c] -= min_val - shortest_[c];
    }
    // Augment along the path back to `cur`.
    std::int32_t j = sink;
    while (true) {
      const std::int32_t r = path_[j];
      row4col_[j] = r;
      std::swap(col4row_[r], j);
      if (r == cur) break;
    }
  }
}

}  // namespace edgepose
