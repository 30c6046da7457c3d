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

// One Euro filter state of T tracks x N keypoints (Casiez et al., CHI 2012), row-major:
// x (T, N, 2) filtered positions, dx (T, N, 2) filtered velocities, time (T, N) of the last
// update, frame (T, N) of the last update.
struct OneEuroState {
  double* x;
  double* dx;
  double* time;
  std::int64_t* frame;
  std::int64_t N;
};

struct OneEuroParams {
  double min_cutoff, beta, d_cutoff;
  std::int64_t max_gap;  // frames a keypoint may be missing before its filter restarts
};

// Filters the R persons' keypoints `xy` (R, N, 2) with flags `vis` (R, N), person r on track
// tracks[r], at time `t` of frame `frame`, in place in `state`; writes the output to out (R, N, 2)
// (a missing keypoint: its input, its state untouched; a keypoint without recent state restarts).
void one_euro_step(OneEuroState state, const OneEuroParams& p, const std::int64_t* tracks, std::int64_t R,
                   const double* xy, const std::uint8_t* vis, double t, std::int64_t frame, double* out);

}  // namespace edgepose
