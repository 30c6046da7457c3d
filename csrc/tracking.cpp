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

}  // namespace edgepose
