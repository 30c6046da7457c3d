"""Pre-processing: Transform algebra, where frame points land in the input (a rendered dot found
again after resizing, in every resize mode), colour / layout / normalisation, batches, bad input."""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, need

from edgepose.errors import InputError
from edgepose.preprocess import Transform, preprocess, transform_for
from edgepose.spec import ModelSpec

FIXED = ModelSpec(input_size=(96, 160), resize="letterbox", interpolation="linear")

SPECS = {
    "letterbox-fixed": FIXED,
    "stretch-fixed": FIXED.replace(resize="stretch"),
    "height-fixed": FIXED.replace(resize="height"),
    "height-dynamic": ModelSpec(input_size=None, resize="height", target_height=120),
    "letterbox-dynamic": ModelSpec(input_size=None, resize="letterbox", target_height=120),
    "stretch-dynamic": ModelSpec(input_size=None, resize="stretch", target_height=120),
}


@pytest.mark.parametrize("frame_size", [(429, 640), (640, 429), (50, 50), (37, 301), (1, 1)])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_transform_round_trip(name: str, frame_size: Tuple[int, int]) -> None:
    t = transform_for(frame_size, SPECS[name])
    rng = np.random.default_rng(1)
    xy = rng.uniform(-10, 700, (100, 2))
    np.testing.assert_allclose(t.to_image(t.to_input(xy)), xy, rtol=0, atol=1e-9)
    np.testing.assert_allclose(t.to_input(t.to_image(xy)), xy, rtol=0, atol=1e-9)
    # Pixel-centre convention (align_corners=False): the frame's outer edges map to the content's.
    h, w = frame_size
    rh, rw = t.content_size
    edges = t.to_input(np.array([[-0.5, -0.5], [w - 0.5, h - 0.5]]))
    np.testing.assert_allclose(edges, [[t.pad_x - 0.5, t.pad_y - 0.5], [t.pad_x + rw - 0.5, t.pad_y + rh - 0.5]],
                               atol=1e-9)
    in_h, in_w = t.input_size
    assert 0 <= t.pad_x and t.pad_x + rw <= in_w and 0 <= t.pad_y and t.pad_y + rh <= in_h


def test_sizes_per_mode() -> None:
    t = transform_for((429, 640), SPECS["letterbox-fixed"])
    assert (t.input_size, t.content_size, (t.pad_y, t.pad_x)) == ((96, 160), (96, 143), (0, 8))
    t = transform_for((429, 640), SPECS["height-fixed"])
    assert (t.content_size, (t.pad_y, t.pad_x)) == ((96, 143), (0, 0))
    t = transform_for((429, 640), SPECS["stretch-fixed"])
    assert (t.content_size, (t.pad_y, t.pad_x)) == ((96, 160), (0, 0))
    # Dynamic: height 120 -> 120 x round(640 * 120 / 429) = 179, input rounded up to multiples of 8.
    t = transform_for((429, 640), SPECS["height-dynamic"])
    assert (t.input_size, t.content_size, (t.pad_y, t.pad_x)) == ((120, 184), (120, 179), (0, 0))
    t = transform_for((429, 640), SPECS["letterbox-dynamic"])
    assert (t.input_size, (t.pad_y, t.pad_x)) == ((120, 184), (0, 2))
    assert transform_for((429, 640), SPECS["stretch-dynamic"]).content_size == (120, 184)


def _blob(frame_size: Tuple[int, int], centre: Tuple[float, float], sigma: float) -> np.ndarray:
    h, w = frame_size
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 1] = np.round(250 * g).astype(np.uint8)  # green: the same channel in BGR and RGB
    return frame


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("frame_size,centre", [((300, 500), (123.3, 201.7)), ((60, 90), (40.6, 22.2))])
def test_dot_maps_back_to_its_frame_pixel(name: str, frame_size: Tuple[int, int],
                                          centre: Tuple[float, float]) -> None:
    spec = SPECS[name]
    sigma = 0.06 * min(frame_size)  # stays a few input pixels wide after down- or up-scaling
    frame = _blob(frame_size, centre, sigma)
    tensor, (t,) = preprocess([frame], spec)
    plane = tensor[0, :, :, 1].astype(np.float64)  # NHWC, green
    # Find the dot in the input: intensity-weighted centroid around the brightest input pixel.
    iy, ix = np.unravel_index(np.argmax(plane), plane.shape)
    r = int(np.ceil(4 * sigma * max(t.scale_x, t.scale_y)))  # the whole blob, not a truncated one
    win = plane[max(0, iy - r): iy + r + 1, max(0, ix - r): ix + r + 1]
    yy, xx = np.mgrid[max(0, iy - r): iy + r + 1, max(0, ix - r): ix + r + 1]
    found_in = np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])
    np.testing.assert_allclose(found_in, t.to_input(np.array(centre)), atol=0.15)
    found_frame = t.to_image(found_in)
    # 0.15 input px; a convention error (half a pixel) would be 0.5 input px.
    np.testing.assert_allclose(found_frame, centre, atol=0.15 / min(t.scale_x, t.scale_y))


def test_colour_order_normalisation_and_layout() -> None:
    frame = np.zeros((8, 16, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 30  # B, G, R
    spec = ModelSpec(input_size=(8, 16), resize="stretch", color="RGB", scale=1 / 256, offset=-0.5,
                     input_layout="NCHW")
    x, _ = preprocess([frame], spec)
    assert x.shape == (1, 3, 8, 16) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x[0, :, 3, 5], np.array([30, 20, 10], np.float32) / 256 - 0.5)
    x, _ = preprocess([frame], spec.replace(color="BGR", input_layout="NHWC", scale=1.0, offset=0.0))
    np.testing.assert_array_equal(x[0, 3, 5], [10, 20, 30])


def test_letterbox_padding_value_is_normalised() -> None:
    spec = ModelSpec.bodyposenet()
    frame = np.full((100, 100, 3), 255, np.uint8)
    x, (t,) = preprocess([frame], spec)
    assert (t.pad_x, t.pad_y) == (48, 0)
    assert np.all(x[0, :, :48] == 0.0) and np.all(x[0, :, -48:] == 0.0)  # pad 128 -> 0 after x/256 - 0.5
    assert np.all(x[0, :, 48:-48] == np.float32(255 / 256 - 0.5))
    x, _ = preprocess([frame], spec.replace(pad_value=0.0))
    assert np.all(x[0, :, :48] == -0.5)


def test_real_image_matches_plain_opencv() -> None:
    frame = cv2.imread(str(need(COCO_MINI / "images" / "000000196141.jpg")))
    spec = ModelSpec.omz_hpe0001()
    x, (t,) = preprocess([frame], spec)
    rh, rw = t.content_size
    want = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_CUBIC).astype(np.float32).transpose(2, 0, 1)
    assert x.shape == (1, 3, 368, 552)
    np.testing.assert_array_equal(x[0, :, :rh, :rw], want)
    assert np.all(x[0, :, :, rw:] == 0.0)


def test_grey_and_bgra_frames() -> None:
    spec = FIXED
    bgr = np.random.default_rng(2).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    bgra = np.concatenate([bgr, np.full((40, 70, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(preprocess([bgra], spec)[0], preprocess([bgr], spec)[0])
    grey = bgr[..., 0].copy()
    x, _ = preprocess([grey], spec)
    x3, _ = preprocess([np.repeat(grey[..., None], 3, axis=2)], spec)
    np.testing.assert_array_equal(x, x3)
    np.testing.assert_array_equal(preprocess([grey[..., None]], spec)[0], x)


def test_batch_of_different_sizes_pads_to_the_largest() -> None:
    spec = ModelSpec.tfpose()
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    x, (ta, tb) = preprocess([a, b], spec)
    xa, _ = preprocess([a], spec)
    xb, _ = preprocess([b], spec)
    assert x.shape == (2, 368, max(xa.shape[2], xb.shape[2]), 3)
    np.testing.assert_array_equal(x[0, :, : xa.shape[2]], xa[0])
    np.testing.assert_array_equal(x[1, :, : xb.shape[2]], xb[0])
    assert np.all(x[1, :, xb.shape[2]:] == spec.pad_value)
    assert (ta, tb) == (preprocess([a], spec)[1][0], preprocess([b], spec)[1][0])
    # A 4-D array is a batch; the batch tensor's dtype follows the model's input.
    x16, _ = preprocess(np.stack([a, a]), spec, dtype=np.float16)
    assert x16.shape[0] == 2 and x16.dtype == np.float16


@pytest.mark.parametrize("frames,words", [
    ([np.zeros((10, 10, 3), np.float32)], r"frames\[0\].*uint8"),
    ([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 5), np.uint8)], r"frames\[1\].*shape"),
    ([np.zeros((0, 10, 3), np.uint8)], r"frames\[0\].*empty"),
    ([[1, 2, 3]], r"frames\[0\].*numpy array"),
    ([], "empty"),
    ("image.jpg", "list"),
    (np.zeros((2, 2, 2, 2, 3), np.uint8), "shape"),
])
def test_bad_frames_raise_input_error(frames: object, words: str) -> None:
    with pytest.raises(InputError, match=words):
        preprocess(frames, FIXED)


def test_extreme_aspect_is_refused() -> None:
    with pytest.raises(InputError, match="limit"):
        transform_for((2, 100000), ModelSpec(target_height=368))


def test_transform_is_a_value() -> None:
    t = Transform(0.5, 0.5, 3, 0, (96, 163), (192, 314))
    assert t == transform_for((192, 314), FIXED.replace(input_size=(96, 163)))


def test_out_tensor_is_reused_when_it_fits():
    spec = ModelSpec.tfpose()
    a = cv2.imread(str(need(COCO_MINI / "images" / "000000196141.jpg")))
    b = cv2.flip(a, 1)
    first, _ = preprocess([a], spec)
    again, _ = preprocess([b], spec, out=first)
    assert again is first  # same size and dtype: written in place, no new tensor
    np.testing.assert_array_equal(again, preprocess([b], spec)[0])
    other, _ = preprocess([a[:200]], spec, out=first)  # another input size: a new tensor, out untouched
    assert other is not first and other.shape != first.shape
    np.testing.assert_array_equal(first, preprocess([b], spec)[0])
    half, _ = preprocess([a], spec, dtype=np.float16, out=first)
    assert half is not first and half.dtype == np.float16
