// The tracker's similarity kernel (edgepose/tracking.py, docs/tracking.md): object keypoint
// similarity of every track's predicted keypoints with every detected person.
#pragma once

#include <cstdint>

namespace edgepose {

// out[t * M + m] = sum_n common * exp(-0.5 * |pred[t, n] - det[m, n]|^2 * inv_var[t, n]) / max(1, sum_n common),
// common = known[t, n] && vis[m, n]. pred (T, N, 2), inv_var (T, N), det (M, N, 2) row-major;
// known (T, N), vis (M, N) flags. Missing keypoints are never read as coordinates.
void keypoint_similarity(const double* pred, const std::uint8_t* known, const double* inv_var, std::int64_t T,
                         const double* det, const std::uint8_t* vis, std::int64_t M, std::int64_t N, double* out);

}  // namespace edgepose
