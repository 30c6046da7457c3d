// The tracker's similarity kernel (see tracking.hpp).
#include "tracking.hpp"

#include <cmath>

namespace edgepose {

void keypoint_similarity(const double* pred, const std::uint8_t* known, const double* inv_var, std::int64_t T,
                         const double* det, const std::uint8_t* vis, std::int64_t M, std::int64_t N, double* out) {
  for (std::int64_t t = 0; t < T; ++t) {
    const double* p = pred + t * N * 2;
    const std::uint8_t* k = known + t * N;
    const double* iv = inv_var + t * N;
    for (std::int64_t m = 0; m < M; ++m) {
      const double* d = det + m * N * 2;
      const std::uint8_t* v = vis + m * N;
      double sum = 0.0;
      std::int64_t count = 0;
      for (std::int64_t n = 0; n < N; ++n) {
        if (!k[n] || !v[n]) continue;
        const double dx = p[2 * n] - d[2 * n], dy = p[2 * n + 1] - d[2 * n + 1];
        sum += std::exp(-0.5 * (dx * dx + dy * dy) * iv[n]);
        ++count;
      }
      out[t * M + m] = count ? sum / static_cast<double>(count) : 0.0;
    }
  }
}

namespace {
constexpr double kTwoPi = 6.283185307179586;
// The smoothing factor of a first-order low-pass at `cutoff` Hz over dt s: 1 / (1 + tau / dt).
double alpha(double cutoff, double dt) { return dt / (dt + 1.0 / (kTwoPi * cutoff)); }
}  // namespace

void one_euro_step(OneEuroState s, const OneEuroParams& p, const std::int64_t* tracks, std::int64_t R,
                   const double* xy, const std::uint8_t* vis, double t, std::int64_t frame, double* out) {
  const std::int64_t N = s.N;
  for (std::int64_t r = 0; r < R; ++r) {
    const std::int64_t base = tracks[r] * N;
    for (std::int64_t n = 0; n < N; ++n) {
      const std::int64_t i = r * N + n, k = base + n;
      const double px = xy[2 * i], py = xy[2 * i + 1];
      out[2 * i] = px;
      out[2 * i + 1] = py;
      if (!vis[i]) continue;
      double* fx = s.x + 2 * k;
      double* fdx = s.dx + 2 * k;
      if (frame - s.frame[k] > p.max_gap + 1) {  // no state, or too old: restart here
        fx[0] = px, fx[1] = py, fdx[0] = 0.0, fdx[1] = 0.0;
      } else {
        const double dt = t - s.time[k];
        const double ad = alpha(p.d_cutoff, dt);
        const double vx = fdx[0] + ad * ((px - fx[0]) / dt - fdx[0]);
        const double vy = fdx[1] + ad * ((py - fx[1]) / dt - fdx[1]);
        const double a = alpha(p.min_cutoff + p.beta * std::sqrt(vx * vx + vy * vy), dt);
        fx[0] += a * (px - fx[0]);
        fx[1] += a * (py - fx[1]);
        fdx[0] = vx, fdx[1] = vy;
      }
      s.time[k] = t;
      s.frame[k] = frame;
      out[2 * i] = fx[0];
      out[2 * i + 1] = fx[1];
    }
  }
}

}  // namespace edgepose
