// Limb candidates: the PAF line integral between two peaks (docs/decoder.md, section 2).
#include "paf.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace edgepose {
namespace {

// The two channels of one limb's PAF, read bilinearly at map coordinates (u, w).
template <typename T>
struct FieldSampler {
  const T* px;  // element (0, 0) of channel cx
  const T* py;  // element (0, 0) of channel cy
  std::ptrdiff_t sh, sw;
  std::ptrdiff_t height, width;

  static double load(const T* p, std::ptrdiff_t o) {
    if constexpr (std::is_same_v<T, float>) {
      return static_cast<double>(p[o]);
    } else {
      return static_cast<double>(half_to_float(p[o]));
    }
  }

  // (u, w) already clamped to [0, W-1] x [0, H-1].
  void operator()(double u, double w, double& vx, double& vy) const {
    const double fu = std::floor(u), fw = std::floor(w);
    const std::ptrdiff_t x0 = static_cast<std::ptrdiff_t>(fu), y0 = static_cast<std::ptrdiff_t>(fw);
    const std::ptrdiff_t x1 = std::min(x0 + 1, width - 1), y1 = std::min(y0 + 1, height - 1);
    const double fx = u - fu, fy = w - fw;
    const double w00 = (1.0 - fx) * (1.0 - fy), w01 = fx * (1.0 - fy), w10 = (1.0 - fx) * fy, w11 = fx * fy;
    const std::ptrdiff_t o00 = y0 * sh + x0 * sw, o01 = y0 * sh + x1 * sw;
    const std::ptrdiff_t o10 = y1 * sh + x0 * sw, o11 = y1 * sh + x1 * sw;
    vx = w00 * load(px, o00) + w01 * load(px, o01) + w10 * load(px, o10) + w11 * load(px, o11);
    vy = w00 * load(py, o00) + w01 * load(py, o01) + w10 * load(py, o10) + w11 * load(py, o11);
  }
};

template <typename T>
void score_limb_t(const FieldSampler<T>& field, double paf_stride, const Peak* from, std::ptrdiff_t na,
                  const Peak* to, std::ptrdiff_t nb, double input_height, const LimbParams& prm,
                  std::vector<std::pair<double, std::int32_t>>& partners, std::vector<LimbCandidate>& out) {
  const double umax = static_cast<double>(field.width - 1), wmax = static_cast<double>(field.height - 1);
  const double inv_stride = 1.0 / paf_stride;
  const bool prune = prm.nearest_partners > 0 && nb > prm.nearest_partners;
  for (std::ptrdiff_t ia = 0; ia < na; ++ia) {
    const Peak& A = from[ia];
    // Rule 2.0: only the `nearest_partners` nearest peaks of B (ties by id) are tried, in id order,
    // so that the cost grows linearly, not quadratically, with the number of people.
    partners.clear();
    for (std::ptrdiff_t ib = 0; ib < nb; ++ib) {
      const double dx = to[ib].x - A.x, dy = to[ib].y - A.y;
      partners.emplace_back(prune ? dx * dx + dy * dy : 0.0, static_cast<std::int32_t>(ib));
    }
    if (prune) {
      const auto keep = partners.begin() + prm.nearest_partners;
      std::nth_element(partners.begin(), keep - 1, partners.end());
      partners.erase(keep, partners.end());
      std::sort(partners.begin(), partners.end(),
                [](const auto& p, const auto& q) { return p.second < q.second; });
    }
    for (const auto& partner : partners) {
      const std::ptrdiff_t ib = partner.second;
      const Peak& B = to[ib];
      const double dx = B.x - A.x, dy = B.y - A.y;
      const double len = std::sqrt(dx * dx + dy * dy);
      if (len < 1e-6) continue;
      const double ex = dx / len, ey = dy / len;

      int n = prm.samples;
      if (prm.sample_step > 0.0) {
        const double want = std::floor(len / paf_stride / prm.sample_step) + 1.0;
        n = static_cast<int>(std::clamp(want, static_cast<double>(prm.samples), static_cast<double>(prm.max_samples)));
      }
      // count >= fraction * n  <=>  count >= ceil(fraction * n) for an integer count.
      const double need_d = std::max(std::ceil(prm.min_sample_fraction * n), 1.0);
      const int need = static_cast<int>(need_d);
      const double inv_last = 1.0 / static_cast<double>(n - 1);

      int count = 0;
      double sum_all = 0.0, sum_pass = 0.0;
      bool rejected = false;
      for (int m = 0; m < n; ++m) {
        // Early exit: even if every remaining sample passed, the count would fall short.
        if (count + (n - m) < need) {
          rejected = true;
          break;
        }
        const double t = static_cast<double>(m) * inv_last;
        const double px = A.x + t * dx, py = A.y + t * dy;
        const double u = std::clamp((px + 0.5) * inv_stride - 0.5, 0.0, umax);
        const double w = std::clamp((py + 0.5) * inv_stride - 0.5, 0.0, wmax);
        double vx = 0.0, vy = 0.0;
        field(u, w, vx, vy);
        const double q = vx * ex + vy * ey;
        sum_all += q;
        if (q > prm.paf_threshold) {
          ++count;
          sum_pass += q;
        }
      }
      if (rejected || count < need) continue;

      double score = prm.score_mode == LimbScore::Mean ? sum_all / n : sum_pass / count;
      if (prm.length_prior > 0.0) score += std::min(0.0, prm.length_prior * input_height / len - 1.0);
      if (!(score > prm.min_limb_score)) continue;
      LimbCandidate c;
      c.a = static_cast<std::int32_t>(ia);
      c.b = static_cast<std::int32_t>(ib);
      c.score = score;
      c.key = score + prm.peak_score_weight * (A.score + B.score);
      out.push_back(c);
    }
  }
}

}  // namespace

void score_limb(const LimbField& f, const Peak* from, std::ptrdiff_t na, const Peak* to, std::ptrdiff_t nb,
                double input_height, const LimbParams& params, std::vector<std::pair<double, std::int32_t>>& partners,
                std::vector<LimbCandidate>& out) {
  const MapView& m = f.paf;
  if (m.dtype == DType::F32) {
    const auto* base = static_cast<const float*>(m.data);
    const FieldSampler<float> s{base + f.cx * m.stride_c, base + f.cy * m.stride_c, m.stride_h, m.stride_w,
                                m.height, m.width};
    score_limb_t(s, f.stride, from, na, to, nb, input_height, params, partners, out);
  } else {
    const auto* base = static_cast<const std::uint16_t*>(m.data);
    const FieldSampler<std::uint16_t> s{base + f.cx * m.stride_c, base + f.cy * m.stride_c, m.stride_h,
                                        m.stride_w, m.height, m.width};
    score_limb_t(s, f.stride, from, na, to, nb, input_height, params, partners, out);
  }
}

}  // namespace edgepose
