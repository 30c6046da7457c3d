// Plain C++ tests of edgepose_core's decoder (no framework); run by ctest, also under ASan/UBSan.
// Prints "<n> checks, <f> failed" and exits non-zero on any failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "decoder.hpp"

namespace {

struct Tally {
  int checks = 0;
  int failed = 0;
};

#define CHECK(tally, cond)                                                 \
  do {                                                                     \
    ++(tally).checks;                                                      \
    if (!(cond)) {                                                         \
      ++(tally).failed;                                                    \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);        \
    }                                                                      \
  } while (0)

using namespace edgepose;

// A dense float32 map (H, W, C) stored NHWC, with its view and an NCHW copy.
struct Map {
  std::ptrdiff_t h, w, c;
  std::vector<float> data;
  Map(std::ptrdiff_t h_, std::ptrdiff_t w_, std::ptrdiff_t c_) : h(h_), w(w_), c(c_), data(h_ * w_ * c_, 0.0f) {}
  float& at(std::ptrdiff_t i, std::ptrdiff_t j, std::ptrdiff_t k) { return data[(i * w + j) * c + k]; }
  MapView nhwc() const { return {data.data(), DType::F32, h, w, c, w * c, c, 1}; }
  std::vector<float> to_nchw() const {
    std::vector<float> out(data.size());
    for (std::ptrdiff_t i = 0; i < h; ++i)
      for (std::ptrdiff_t j = 0; j < w; ++j)
        for (std::ptrdiff_t k = 0; k < c; ++k) out[(k * h + i) * w + j] = data[(i * w + j) * c + k];
    return out;
  }
  MapView nchw(const std::vector<float>& buf) const { return {buf.data(), DType::F32, h, w, c, w, 1, h * w}; }
};

// float -> IEEE binary16 (round to nearest even; normal range only, enough for map values).
std::uint16_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const int exp = static_cast<int>((x >> 23) & 0xFF) - 127 + 15;
  std::uint32_t mant = x & 0x7FFFFFu;
  if (exp <= 0) return static_cast<std::uint16_t>(sign);  // flush tiny values to zero
  std::uint32_t h = sign | (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  const std::uint32_t rest = mant & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(h);
}

// A Gaussian blob centred at map coordinates (u, w) in channel k.
void gaussian(Map& m, std::ptrdiff_t k, double u, double w, double sigma, double peak = 1.0) {
  for (std::ptrdiff_t i = 0; i < m.h; ++i)
    for (std::ptrdiff_t j = 0; j < m.w; ++j) {
      const double d2 = (j - u) * (j - u) + (i - w) * (i - w);
      const float v = static_cast<float>(peak * std::exp(-d2 / (2 * sigma * sigma)));
      if (v > m.at(i, j, k)) m.at(i, j, k) = v;
    }
}

// Unit vectors from -> to on the cells within `width` cells of the segment (channels cx, cy).
void paf_segment(Map& m, std::ptrdiff_t cx, std::ptrdiff_t cy, double u0, double w0, double u1, double w1,
                 double width = 1.0) {
  const double dx = u1 - u0, dy = w1 - w0, len = std::sqrt(dx * dx + dy * dy);
  for (std::ptrdiff_t i = 0; i < m.h; ++i)
    for (std::ptrdiff_t j = 0; j < m.w; ++j) {
      double t = ((j - u0) * dx + (i - w0) * dy) / (len * len);
      t = t < 0 ? 0 : (t > 1 ? 1 : t);
      const double px = u0 + t * dx - j, py = w0 + t * dy - i;
      if (px * px + py * py <= width * width) {
        m.at(i, j, cx) = static_cast<float>(dx / len);
        m.at(i, j, cy) = static_cast<float>(dy / len);
      }
    }
}

// A 3-keypoint, 2-limb chain topology: 0 -> 1 -> 2, PAF channels (0, 1) and (2, 3).
std::vector<Limb> chain() { return {{0, 1, 0, 1, true}, {1, 2, 2, 3, true}}; }

DecoderConfig loose() {
  DecoderConfig c;
  c.min_parts = 1;
  c.min_person_score = 0.0;
  return c;
}

void test_peaks(Tally& t) {
  Map m(20, 24, 2);
  gaussian(m, 0, 9.3, 7.8, 1.5);
  PeakParams p;
  p.nms_radius = 1;  // 3x3 NMS: the lattices below have a peak every other cell
  std::vector<Peak> out;
  find_peaks(m.nhwc(), 0, 1.0, p, out);  // stride 1: pixels == map coordinates
  CHECK(t, out.size() == 1);
  if (!out.empty()) {
    CHECK(t, std::fabs(out[0].x - 9.3) < 0.05);
    CHECK(t, std::fabs(out[0].y - 7.8) < 0.05);
    CHECK(t, out[0].row == 8 && out[0].col == 9);
  }
  // Stride 8: pixel = (u + 0.5) * 8 - 0.5.
  find_peaks(m.nhwc(), 0, 8.0, p, out);
  CHECK(t, out.size() == 1 && std::fabs(out[0].x - ((9.3 + 0.5) * 8 - 0.5)) < 0.4);
  // Other refinements stay within half a cell and move towards the true centre.
  for (Refine r : {Refine::None, Refine::Centroid, Refine::Quadratic}) {
    p.refine = r;
    find_peaks(m.nhwc(), 0, 1.0, p, out);
    CHECK(t, out.size() == 1 && std::fabs(out[0].x - 9.0) <= 0.5 && std::fabs(out[0].y - 8.0) <= 0.5);
    if (r != Refine::None) CHECK(t, out.size() == 1 && out[0].x > 9.0 && out[0].y < 8.0);
  }
  // A plateau yields only its first cell in raster order.
  Map flat(10, 10, 1);
  for (int i = 3; i < 6; ++i)
    for (int j = 2; j < 7; ++j) flat.at(i, j, 0) = 0.7f;
  p.refine = Refine::None;
  find_peaks(flat.nhwc(), 0, 1.0, p, out);
  CHECK(t, out.size() == 1 && out[0].row == 3 && out[0].col == 2);
  // Below threshold: nothing. Channel 1 is empty.
  find_peaks(m.nhwc(), 1, 1.0, p, out);
  CHECK(t, out.empty());
  // Cap: a lattice of isolated cells (every one a peak) keeps the max_peaks strongest, strongest
  // first; without the cap, all 256.
  Map board(32, 32, 1);
  for (int i = 0; i < 32; i += 2)
    for (int j = 0; j < 32; j += 2) board.at(i, j, 0) = 0.2f + 0.001f * static_cast<float>(i);
  p.max_peaks = 5;
  find_peaks(board.nhwc(), 0, 1.0, p, out);
  CHECK(t, out.size() == 5);
  bool sorted = true;
  for (std::size_t k = 1; k < out.size(); ++k) sorted = sorted && out[k - 1].score >= out[k].score;
  CHECK(t, sorted && out.size() == 5 && out[0].row == 30 && out[0].col == 0 && out[4].col == 8);
  p.max_peaks = 1024;
  find_peaks(board.nhwc(), 0, 1.0, p, out);
  CHECK(t, out.size() == 256);
  // A checkerboard of equal values: below row 0 every cell has an equal diagonal neighbour in the
  // row above, earlier in raster order, so only row 0 holds peaks.
  Map checker(16, 16, 1);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) checker.at(i, j, 0) = ((i + j) % 2) ? 0.0f : 1.0f;
  find_peaks(checker.nhwc(), 0, 1.0, p, out);
  CHECK(t, out.size() == 8 && out[0].row == 0 && out[0].col == 0 && out[7].row == 0 && out[7].col == 14);
}

// Two people side by side on the chain topology.
struct Scene {
  Map heat{24, 32, 4}, paf{24, 32, 4};
  Scene() {
    const double people[2][3][2] = {{{5.2, 3.1}, {5.6, 10.4}, {6.1, 18.2}}, {{20.3, 4.2}, {21.1, 11.7}, {20.6, 19.4}}};
    for (const auto& p : people) {
      for (int k = 0; k < 3; ++k) gaussian(heat, k, p[k][0], p[k][1], 1.2);
      paf_segment(paf, 0, 1, p[0][0], p[0][1], p[1][0], p[1][1]);
      paf_segment(paf, 2, 3, p[1][0], p[1][1], p[2][0], p[2][1]);
    }
  }
};

void test_two_people(Tally& t) {
  Scene s;
  Decoder dec(chain(), 3, loose());
  const Result r = dec.decode(s.heat.nhwc(), s.paf.nhwc(), 1.0, 1.0);
  CHECK(t, r.num_persons == 2);
  CHECK(t, r.keypoints.size() == 2u * 3u * 3u && r.scores.size() == 2u);
  if (r.num_persons == 2) {
    // Each person's three keypoints lie in one column band (left x < 10, right x > 15).
    for (int p = 0; p < 2; ++p) {
      const float* kp = &r.keypoints[p * 9];
      const bool left = kp[0] < 10.0f;
      for (int k = 0; k < 3; ++k) {
        CHECK(t, kp[3 * k + 2] > 0.8f);
        CHECK(t, left ? kp[3 * k] < 10.0f : kp[3 * k] > 15.0f);
      }
    }
    CHECK(t, r.scores[0] >= r.scores[1]);
  }
  // NCHW is only other strides: the same result, bit for bit.
  const std::vector<float> hc = s.heat.to_nchw(), pc = s.paf.to_nchw();
  const Result rc = dec.decode(s.heat.nchw(hc), s.paf.nchw(pc), 1.0, 1.0);
  CHECK(t, rc.num_persons == r.num_persons && rc.keypoints == r.keypoints && rc.scores == r.scores);
  // float16 gives the same persons, keypoints within a small tolerance.
  std::vector<std::uint16_t> h16(s.heat.data.size()), p16(s.paf.data.size());
  for (std::size_t i = 0; i < h16.size(); ++i) h16[i] = float_to_half(s.heat.data[i]);
  for (std::size_t i = 0; i < p16.size(); ++i) p16[i] = float_to_half(s.paf.data[i]);
  MapView hv = s.heat.nhwc(), pv = s.paf.nhwc();
  hv.data = h16.data();
  hv.dtype = DType::F16;
  pv.data = p16.data();
  pv.dtype = DType::F16;
  const Result rh = dec.decode(hv, pv, 1.0, 1.0);
  CHECK(t, rh.num_persons == r.num_persons);
  if (rh.num_persons == r.num_persons) {
    float worst = 0.0f;
    for (std::size_t i = 0; i < r.keypoints.size(); ++i) worst = std::fmax(worst, std::fabs(rh.keypoints[i] - r.keypoints[i]));
    CHECK(t, worst < 0.05f);
  }
  // Every configuration choice runs and still finds both people on this clean scene.
  for (Matching m : {Matching::Greedy, Matching::Optimal})
    for (AssemblyOrder o : {AssemblyOrder::Limb, AssemblyOrder::Score})
      for (LimbScore ls : {LimbScore::Mean, LimbScore::MeanPassing}) {
        DecoderConfig c = loose();
        c.matching = m;
        c.assembly_order = o;
        c.limb_score = ls;
        c.paf_sample_step = 1.0;
        Decoder d(chain(), 3, c);
        CHECK(t, d.decode(s.heat.nhwc(), s.paf.nhwc(), 1.0, 1.0).num_persons == 2);
      }
  // Caps: max_persons.
  DecoderConfig one = loose();
  one.max_persons = 1;
  Decoder d1(chain(), 3, one);
  const Result r1 = d1.decode(s.heat.nhwc(), s.paf.nhwc(), 1.0, 1.0);
  CHECK(t, r1.num_persons == 1 && r1.scores.size() == 1 && r.num_persons == 2 && r1.scores[0] == r.scores[0]);
  // min_parts above the chain's size filters everybody out.
  DecoderConfig strict = loose();
  strict.min_parts = 4;
  Decoder d4(chain(), 3, strict);
  CHECK(t, d4.decode(s.heat.nhwc(), s.paf.nhwc(), 1.0, 1.0).num_persons == 0);
  // A limb that may not start a person: with only limb 1 allowed to start, nobody starts on 0.
  std::vector<Limb> limbs = chain();
  limbs[0].starts_person = false;
  limbs[1].starts_person = false;
  DecoderConfig pairs = loose();
  pairs.min_parts = 2;  // with min_parts 1, each lone peak would be a person of its own (rule 4.5)
  Decoder dn(limbs, 3, pairs);
  CHECK(t, dn.decode(s.heat.nhwc(), s.paf.nhwc(), 1.0, 1.0).num_persons == 0);
  // Rule 4.5: with min_parts 1 every lone peak (two people x three keypoints) is a one-part person.
  Decoder d1p(limbs, 3, loose());
  CHECK(t, d1p.decode(s.heat.nhwc(), s.paf.nhwc(), 1.0, 1.0).num_persons == 6);
}

void test_empty_and_errors(Tally& t) {
  Map heat(8, 8, 4), paf(8, 8, 4);
  Decoder dec(chain(), 3, loose());
  Result r = dec.decode(heat.nhwc(), paf.nhwc(), 8.0, 8.0);
  CHECK(t, r.num_persons == 0 && r.keypoints.empty() && r.scores.empty());
  auto throws = [&](MapView h, MapView p, double hs, double ps) {
    try {
      dec.decode(h, p, hs, ps);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  MapView bad = heat.nhwc();
  bad.channels = 3;
  CHECK(t, throws(bad, paf.nhwc(), 8, 8));
  bad = heat.nhwc();
  bad.height = 0;
  CHECK(t, throws(bad, paf.nhwc(), 8, 8));
  CHECK(t, throws(heat.nhwc(), paf.nhwc(), 0.0, 8));
  CHECK(t, throws(heat.nhwc(), paf.nhwc(), 8, -1.0));
  CHECK(t, throws(heat.nhwc(), paf.nhwc(), 8, std::nan("")));
  // The decoder still works after an error.
  CHECK(t, dec.decode(heat.nhwc(), paf.nhwc(), 8.0, 8.0).num_persons == 0);
  // Bad topology / configuration.
  auto ctor_throws = [](std::vector<Limb> l, int n, DecoderConfig c) {
    try {
      Decoder d(std::move(l), n, c);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  CHECK(t, ctor_throws({{0, 3, 0, 1, true}}, 3, loose()));
  CHECK(t, ctor_throws({{0, 1, 0, 2, true}}, 3, loose()));
  CHECK(t, ctor_throws({}, 3, loose()));
  DecoderConfig c = loose();
  c.max_peaks = 0;
  CHECK(t, ctor_throws(chain(), 3, c));
  c = loose();
  c.peak_threshold = std::nan("");
  CHECK(t, ctor_throws(chain(), 3, c));
  // all_finite: NaN / inf found in float32 and float16, zero-stride views read once.
  CHECK(t, all_finite(heat.nhwc()));
  heat.at(7, 7, 3) = std::nanf("");
  CHECK(t, !all_finite(heat.nhwc()));
  heat.at(7, 7, 3) = INFINITY;
  CHECK(t, !all_finite(heat.nhwc()));
  const std::uint16_t h16[4] = {0x3C00, 0x7C00, 0, 0};  // 1.0, +inf
  CHECK(t, !all_finite({h16, DType::F16, 1, 2, 2, 4, 2, 1}));
  CHECK(t, all_finite({h16, DType::F16, 1, 1, 1, 4, 2, 1}));
  const float one = 1.0f;
  CHECK(t, all_finite({&one, DType::F32, 2048, 2048, 19, 0, 0, 0}));
}

void test_adversarial(Tally& t) {
  // A peak in every other cell of every other row (1024 per channel) and a PAF that passes
  // everywhere: the caps bound peaks (max_peaks), candidates (kMaxLimbPeaks per end) and
  // persons (max_persons).
  Map heat(64, 64, 4), paf(64, 64, 4);
  for (int i = 0; i < 64; i += 2)
    for (int j = 0; j < 64; j += 2)
      for (int k = 0; k < 3; ++k) heat.at(i, j, k) = 1.0f;
  for (float& v : paf.data) v = 0.7f;
  for (Matching m : {Matching::Greedy, Matching::Optimal}) {
    DecoderConfig c = loose();
    c.nms_radius = 1;  // with 5x5 NMS the equal peaks two cells apart would suppress each other
    c.max_peaks = 1024;
    c.max_persons = 7;
    c.matching = m;
    Decoder dec(chain(), 3, c);
    const Result r = dec.decode(heat.nhwc(), paf.nhwc(), 1.0, 1.0);
    CHECK(t, r.num_persons <= 7 && r.num_persons >= 1);
    CHECK(t, r.scores.size() == static_cast<std::size_t>(r.num_persons));
  }
  // Thresholds beyond float's range (finite doubles, so valid): none passes, or every cell does.
  PeakParams p;
  p.nms_radius = 1;
  std::vector<Peak> out;
  p.threshold = 1e300;
  find_peaks(heat.nhwc(), 0, 1.0, p, out);
  CHECK(t, out.empty());
  p.threshold = -1e300;
  p.max_peaks = 1024;
  find_peaks(heat.nhwc(), 0, 1.0, p, out);
  CHECK(t, out.size() == 1024);
}

}  // namespace

// DecoderConfig{} must be edgepose.DecoderConfig(): the binding fills fields missing from its dict
// from these defaults.
void test_config_defaults(Tally& t) {
  const DecoderConfig c;
  CHECK(t, c.peak_threshold == 0.05 && c.nms_radius == 2 && c.refine == Refine::Gaussian && c.max_peaks == 128);
  CHECK(t, c.paf_samples == 10 && c.paf_sample_step == 0.0 && c.max_paf_samples == 25);
  CHECK(t, c.paf_threshold == 0.02 && c.min_sample_fraction == 0.7 && c.limb_score == LimbScore::Mean);
  CHECK(t, c.length_prior == 0.0 && c.min_limb_score == 0.0 && c.matching == Matching::Greedy);
  CHECK(t, c.peak_score_weight == 0.0 && c.nearest_partners == 8 && c.assembly_order == AssemblyOrder::Limb);
  CHECK(t, c.merge && c.min_parts == 2 && c.min_person_score == 0.4);
  CHECK(t, c.person_score == PersonScore::MeanParts && c.parts_exponent == 0.5 && c.max_persons == 100);
}

int main() {
  Tally t;
  test_config_defaults(t);
  test_peaks(t);
  test_two_people(t);
  test_empty_and_errors(t);
  test_adversarial(t);
  std::printf("%d checks, %d failed\n", t.checks, t.failed);
  return t.failed == 0 ? 0 : 1;
}
