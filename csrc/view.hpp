// A small strided view: a pointer that travels with its shape and element strides.
// NHWC vs NCHW, heatmap vs PAF resolution: these are strides, not code paths.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace edgepose {

// IEEE-754 binary16 -> float, portable (no F16C / NEON intrinsics needed).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1Fu;
  std::uint32_t mant = h & 0x3FFu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FFu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf / NaN
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

enum class DType : std::uint8_t { F32, F16 };

// Limits shared by the decoder and the renderer. A map holds at most kMaxMapCells cells (H * W)
// per channel: 2048 x 2048, i.e. a 16k x 16k input at stride 8 or 4k x 4k at stride 2. Strides
// (input pixels per cell) outside [kMinStride, kMaxStride] are refused: no network has them, and at
// the extremes coordinates lose all precision or overflow float32.
constexpr std::int64_t kMaxMapCells = std::int64_t{1} << 22;
constexpr double kMinStride = 0.01;
constexpr double kMaxStride = 1024.0;

// One image's map of shape (H, W, C) in *logical* order; the strides (in elements) say where each
// axis lives in memory, so an NCHW tensor is the same view with other strides.
struct MapView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  std::ptrdiff_t height = 0, width = 0, channels = 0;
  std::ptrdiff_t stride_h = 0, stride_w = 0, stride_c = 0;  // in elements

  std::ptrdiff_t offset(std::ptrdiff_t i, std::ptrdiff_t j, std::ptrdiff_t c) const {
    return i * stride_h + j * stride_w + c * stride_c;
  }
  float at(std::ptrdiff_t i, std::ptrdiff_t j, std::ptrdiff_t c) const {
    const std::ptrdiff_t o = offset(i, j, c);
    if (dtype == DType::F32) return static_cast<const float*>(data)[o];
    return half_to_float(static_cast<const std::uint16_t*>(data)[o]);
  }
};

// A mutable float32 map (H, W, C) with element strides, for the renderer's output.
struct MutMapView {
  float* data = nullptr;
  std::ptrdiff_t height = 0, width = 0, channels = 0;
  std::ptrdiff_t stride_h = 0, stride_w = 0, stride_c = 0;
  float& at(std::ptrdiff_t i, std::ptrdiff_t j, std::ptrdiff_t c) const {
    return data[i * stride_h + j * stride_w + c * stride_c];
  }
};

}  // namespace edgepose
