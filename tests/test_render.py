"""The ground-truth renderer: C++ (edgepose.render) against the numpy reference, and its geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgepose import _decoder
from edgepose._reference import GAUSSIAN_CUTOFF, render_heatmaps_reference, render_pafs_reference
from edgepose.errors import InputError
from edgepose.render import render_heatmaps, render_pafs
from edgepose.topology import BODYPOSENET, coco17_to_topology

N = BODYPOSENET.num_keypoints
K = BODYPOSENET.num_limbs
NECK, R_HIP = BODYPOSENET.index("neck"), BODYPOSENET.index("right_hip")
LIMB_NECK_RHIP = BODYPOSENET.limbs.index((NECK, R_HIP))  # limb 0: neck -> right hip


def coco_persons(coco_annotations: dict) -> list:
    """(image, (M, 18, 3) keypoints) for every coco_mini image with labelled persons."""
    by_image: dict = {}
    for ann in coco_annotations["annotations"]:
        if ann.get("num_keypoints", 0) > 0:
            by_image.setdefault(ann["image_id"], []).append(ann["keypoints"])
    out = []
    for im in coco_annotations["images"]:
        if im["id"] in by_image:
            kp17 = np.array(by_image[im["id"]], dtype=np.float32).reshape(-1, 17, 3)
            out.append((im, coco17_to_topology(kp17)))
    return out


def map_shape(im: dict, stride: int = 8) -> tuple:
    return (math.ceil(im["height"] / stride), math.ceil(im["width"] / stride))


def one_person(**points: tuple) -> np.ndarray:
    """(1, N, 3) keypoints with the named keypoints at (x, y) pixels, visible."""
    kp = np.zeros((1, N, 3), np.float32)
    for name, (x, y) in points.items():
        kp[0, BODYPOSENET.index(name)] = (x, y, 2)
    return kp


def cell_centre(j: float, s: float) -> float:
    """Input pixel of map coordinate j at stride s (docs/decoder.md section 0)."""
    return (j + 0.5) * s - 0.5


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("sigma, width", [(1.0, 1.0), (1.7, 0.6)])
def test_cpp_matches_reference_on_coco(coco_annotations, layout, sigma, width):
    persons = coco_persons(coco_annotations)
    assert len(persons) == 50  # the data README: 50 images with keypoints
    for im, kp in persons:
        shape = map_shape(im)
        heat = render_heatmaps(kp, shape=shape, stride=8, sigma=sigma, layout=layout)
        paf = render_pafs(kp, shape=shape, stride=8, width=width, layout=layout)
        heat_ref = render_heatmaps_reference(kp, shape=shape, stride=8, sigma=sigma, layout=layout)
        paf_ref = render_pafs_reference(kp, shape=shape, stride=8, width=width, layout=layout)
        h, w = shape
        assert heat.dtype == np.float32 and paf.dtype == np.float32
        assert heat.shape == ((h, w, N + 1) if layout == "NHWC" else (N + 1, h, w))
        assert paf.shape == ((h, w, 2 * K) if layout == "NHWC" else (2 * K, h, w))
        np.testing.assert_allclose(heat, heat_ref, rtol=0, atol=1e-5, err_msg=f"image {im['id']} heatmap")
        np.testing.assert_allclose(paf, paf_ref, rtol=0, atol=1e-5, err_msg=f"image {im['id']} paf")
        drawable = any(np.any((kp[:, a, 2] > 0) & (kp[:, b, 2] > 0)) for a, b in BODYPOSENET.limbs)
        assert paf.any() == np.any(drawable), f"image {im['id']}: limbs drawn iff some limb has both ends"


def test_layouts_are_transposes(coco_annotations):
    im, kp = max(coco_persons(coco_annotations), key=lambda t: len(t[1]))  # the most crowded image
    shape = map_shape(im)
    np.testing.assert_array_equal(
        render_heatmaps(kp, shape=shape, stride=8, layout="NCHW"),
        render_heatmaps(kp, shape=shape, stride=8).transpose(2, 0, 1),
    )
    np.testing.assert_array_equal(
        render_pafs(kp, shape=shape, stride=8, layout="NCHW"), render_pafs(kp, shape=shape, stride=8).transpose(2, 0, 1)
    )


def test_background_is_one_minus_max(coco_annotations):
    im, kp = max(coco_persons(coco_annotations), key=lambda t: len(t[1]))
    heat = render_heatmaps(kp, shape=map_shape(im), stride=8, sigma=1.5)
    expected = np.maximum(0.0, 1.0 - heat[:, :, :N].max(axis=2))
    np.testing.assert_allclose(heat[:, :, N], expected, atol=1e-7)
    assert heat[:, :, N].max() == 1.0  # far from every keypoint
    assert heat[:, :, N].min() < 0.01  # near a keypoint's centre
    assert heat.min() >= 0.0 and heat.max() <= 1.0


@pytest.mark.parametrize("stride", [8, 4, 2])
def test_lone_keypoint_peak_is_one_at_its_cell(stride):
    i, j = 5, 7
    kp = one_person(nose=(cell_centre(j, stride), cell_centre(i, stride)))
    heat = render_heatmaps(kp, shape=(12, 16), stride=stride, sigma=1.0)
    nose = heat[:, :, 0]
    assert nose[i, j] == pytest.approx(1.0, abs=1e-7)
    assert np.unravel_index(np.argmax(nose), nose.shape) == (i, j)
    assert nose[i, j + 1] == pytest.approx(math.exp(-0.5), abs=1e-6)  # one cell = one sigma
    assert nose[i + 1, j + 1] == pytest.approx(math.exp(-1.0), abs=1e-6)
    assert heat[i, j, N] == pytest.approx(0.0, abs=1e-7)  # background
    assert np.count_nonzero(heat[:, :, 1:N]) == 0  # no other keypoint drawn


@pytest.mark.parametrize("offset", [(0.25, -0.4), (-0.3, 0.1), (0.49, 0.49)])
def test_sub_cell_placement(offset):
    """The log-parabola through a rendered peak and its neighbours recovers the sub-cell offset."""
    stride, sigma, i, j = 8, 1.3, 6, 9
    dx, dy = offset
    kp = one_person(neck=(cell_centre(j + dx, stride), cell_centre(i + dy, stride)))
    h = render_heatmaps(kp, shape=(14, 20), stride=stride, sigma=sigma)[:, :, NECK].astype(np.float64)
    assert np.unravel_index(np.argmax(h), h.shape) == (i, j)

    def vertex(lo: float, c: float, hi: float) -> float:
        ll, lc, lr = math.log(lo), math.log(c), math.log(hi)
        return 0.5 * (ll - lr) / (ll - 2 * lc + lr)

    assert vertex(h[i, j - 1], h[i, j], h[i, j + 1]) == pytest.approx(dx, abs=1e-4)
    assert vertex(h[i - 1, j], h[i, j], h[i + 1, j]) == pytest.approx(dy, abs=1e-4)


def test_gaussian_is_cut_beyond_three_sigma():
    sigma, stride = 1.0, 4
    kp = one_person(nose=(cell_centre(20, stride), cell_centre(20, stride)))
    h = render_heatmaps(kp, shape=(41, 41), stride=stride, sigma=sigma)[:, :, 0]
    ii, jj = np.mgrid[0:41, 0:41]
    exponent = ((ii - 20) ** 2 + (jj - 20) ** 2) / (2 * sigma**2)
    assert np.all(h[exponent > GAUSSIAN_CUTOFF] == 0)
    inside = exponent <= GAUSSIAN_CUTOFF
    np.testing.assert_allclose(h[inside], np.exp(-exponent[inside]), atol=1e-6)
    assert h[inside].min() >= 0.01 - 1e-7  # the cut is at 1 %, about 3 sigma
    assert 3.0 < math.sqrt(2 * GAUSSIAN_CUTOFF) < 3.1


def segment_distance(px: np.ndarray, py: np.ndarray, a: tuple, b: tuple) -> np.ndarray:
    """Distance from points to the segment a-b, by dense sampling (independent of the renderer)."""
    t = np.linspace(0.0, 1.0, 4001)
    sx, sy = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
    return np.sqrt((px[..., None] - sx) ** 2 + (py[..., None] - sy) ** 2).min(axis=-1)


@pytest.mark.parametrize("width", [1.0, 2.5])
def test_paf_unit_inside_band_zero_outside(width):
    stride = 8
    a_map, b_map = (3.3, 4.1), (17.6, 11.8)  # neck -> right hip, map coordinates
    kp = one_person(
        neck=(cell_centre(a_map[0], stride), cell_centre(a_map[1], stride)),
        right_hip=(cell_centre(b_map[0], stride), cell_centre(b_map[1], stride)),
    )
    paf = render_pafs(kp, shape=(16, 22), stride=stride, width=width)
    cx, cy = BODYPOSENET.paf_channels[LIMB_NECK_RHIP]
    vx, vy = paf[:, :, cx], paf[:, :, cy]
    ii, jj = np.mgrid[0:16, 0:22].astype(np.float64)
    dist = segment_distance(jj, ii, a_map, b_map)
    inside, outside = dist < width - 1e-3, dist > width + 1e-3
    assert inside.sum() > 20
    d = np.array(b_map) - np.array(a_map)
    e = d / np.linalg.norm(d)
    np.testing.assert_allclose(vx[inside], e[0], atol=1e-6)
    np.testing.assert_allclose(vy[inside], e[1], atol=1e-6)
    assert np.all(vx[outside] == 0) and np.all(vy[outside] == 0)
    others = np.delete(paf, [cx, cy], axis=2)
    assert not others.any()  # no other limb has both ends


def test_limb_shorter_than_a_cell_gets_support():
    stride = 8
    kp = one_person(neck=(40.0, 40.0), right_hip=(43.0, 41.0))  # 3.2 px: under half a cell
    paf = render_pafs(kp, shape=(10, 10), stride=stride, width=1.0)
    cx, cy = BODYPOSENET.paf_channels[LIMB_NECK_RHIP]
    norm = np.hypot(paf[:, :, cx], paf[:, :, cy])
    assert np.count_nonzero(norm) >= 1
    np.testing.assert_allclose(norm[norm > 0], 1.0, atol=1e-6)
    e = np.array([3.0, 1.0]) / math.hypot(3.0, 1.0)
    covered = norm > 0
    np.testing.assert_allclose(paf[covered, cx], e[0], atol=1e-6)
    np.testing.assert_allclose(paf[covered, cy], e[1], atol=1e-6)
    u, w = (40.0 + 0.5) / stride - 0.5, (40.0 + 0.5) / stride - 0.5
    assert covered[round(w), round(u)]  # the cell under the limb


def test_overlapping_limbs_are_averaged():
    """Two persons' crossing limbs: the covered cells hold the mean of the two unit vectors."""
    stride = 4
    kp = np.zeros((2, N, 3), np.float32)
    c2, c10, c18 = (cell_centre(v, stride) for v in (2, 10, 18))
    kp[0, NECK], kp[0, R_HIP] = (c2, c10, 2), (c18, c10, 2)  # horizontal, left to right
    kp[1, NECK], kp[1, R_HIP] = (c10, c2, 2), (c10, c18, 2)  # vertical, top to bottom
    paf = render_pafs(kp, shape=(21, 21), stride=stride, width=1.0)
    cx, cy = BODYPOSENET.paf_channels[LIMB_NECK_RHIP]
    assert paf[10, 10, cx] == pytest.approx(0.5) and paf[10, 10, cy] == pytest.approx(0.5)  # both cover
    assert (paf[10, 4, cx], paf[10, 4, cy]) == (1.0, 0.0)  # only the horizontal limb
    assert (paf[4, 10, cx], paf[4, 10, cy]) == (0.0, 1.0)  # only the vertical limb


def test_invisible_and_empty_keypoints_render_nothing():
    kp = one_person(neck=(10.0, 10.0), right_hip=(30.0, 30.0))
    kp[0, R_HIP, 2] = 0  # hip not visible: no neck -> hip limb, no hip Gaussian
    heat = render_heatmaps(kp, shape=(8, 8), stride=8)
    paf = render_pafs(kp, shape=(8, 8), stride=8)
    assert heat[:, :, R_HIP].max() == 0 and heat[:, :, NECK].max() > 0.5
    assert not paf.any()
    empty = np.zeros((0, N, 3), np.float32)
    heat = render_heatmaps(empty, shape=(5, 6), stride=8)
    assert not heat[:, :, :N].any() and np.all(heat[:, :, N] == 1)
    assert not render_pafs(empty, shape=(5, 6), stride=8, layout="NCHW").any()


GOOD = one_person(neck=(10.0, 10.0), right_hip=(30.0, 30.0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"keypoints": np.zeros((1, 17, 3))}, InputError, r"keypoints: expected shape \(M, 18, 3\)"),
        ({"keypoints": np.zeros((18, 3))}, InputError, r"keypoints: expected shape"),
        ({"keypoints": np.array([["a"] * 3] * 18)[None]}, InputError, "numeric"),
        ({"keypoints": np.where(np.arange(3) == 0, np.nan, GOOD)}, ValueError, "keypoints: holds NaN"),
        ({"keypoints": np.where(np.arange(3) == 1, np.inf, GOOD)}, ValueError, "keypoints: holds NaN or infinite"),
        ({"stride": 0}, ValueError, r"stride: must be a finite number in \[0\.01, 1024\]"),
        ({"stride": -8}, ValueError, r"stride: must be a finite number in \[0\.01, 1024\]"),
        ({"stride": float("nan")}, ValueError, "stride"),
        ({"shape": (0, 5)}, ValueError, "height, width"),
        ({"shape": (5, -1)}, ValueError, "height, width"),
        ({"shape": (70000, 10)}, ValueError, "height, width"),
        ({"shape": (50000, 50000)}, ValueError, "elements"),
        ({"shape": (5,)}, InputError, "shape"),
        ({"shape": None}, InputError, "shape"),
        ({"layout": "NWHC"}, InputError, "layout: expected one of"),
    ],
)
@pytest.mark.parametrize("which", ["heatmaps", "pafs"])
def test_bad_inputs(kwargs, error, match, which):
    args = {"keypoints": GOOD, "shape": (6, 6), "stride": 8}
    args.update(kwargs)
    fn = render_heatmaps if which == "heatmaps" else render_pafs
    with pytest.raises(error, match=match):
        fn(args.pop("keypoints"), **args)
    assert fn(GOOD, shape=(6, 6), stride=8).any()  # still works after the error


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("inf")])
def test_bad_sigma(sigma):
    with pytest.raises(ValueError, match=r"sigma: must be a finite number in \(0, 10000\]"):
        render_heatmaps(GOOD, shape=(6, 6), stride=8, sigma=sigma)


@pytest.mark.parametrize("width", [0.0, -2.0, float("nan")])
def test_bad_width(width):
    with pytest.raises(ValueError, match=r"width: must be a finite number in \(0, 10000\]"):
        render_pafs(GOOD, shape=(6, 6), stride=8, width=width)


@pytest.mark.parametrize(
    "limbs, match",
    [
        (np.array([[0, 18, 0, 1]], np.int32), r"limbs\[0\]: ends must be two different keypoints"),
        (np.array([[-1, 2, 0, 1]], np.int32), r"limbs\[0\]: ends"),
        (np.array([[3, 3, 0, 1]], np.int32), r"limbs\[0\]: ends"),
        (np.array([[0, 1, 0, 1], [1, 2, 1, 2]], np.int32), r"limbs\[1\]: PAF channels must use each of 0..3"),
        (np.array([[0, 1, 0, 2]], np.int32), r"limbs\[0\]: PAF channels"),
        (np.zeros((0, 4), np.int32), r"limbs: expected shape \(K, 4\) with K >= 1"),
        (np.zeros((2, 3), np.int32), r"limbs: expected shape \(K, 4\)"),
    ],
)
def test_bad_limbs_at_the_cpp_boundary(limbs, match):
    with pytest.raises(ValueError, match=match):
        _decoder.render_pafs(GOOD.astype(np.float64), limbs, 6, 6, 8.0, 1.0, False)


def test_cpp_boundary_checks_keypoint_shape():
    with pytest.raises(ValueError, match=r"keypoints: expected shape \(M, N, 3\), got \(2, 18\)"):
        _decoder.render_heatmaps(np.zeros((2, 18)), 6, 6, 8.0, 1.0, False)
    with pytest.raises(ValueError, match=r"keypoints: expected shape \(M, N, 3\) with N >= 1"):
        _decoder.render_heatmaps(np.zeros((2, 0, 3)), 6, 6, 8.0, 1.0, False)


def test_zero_stride_broadcast_input_is_accepted():
    """A broadcast (zero-stride) keypoint array costs no memory and renders like a copy."""
    many = np.broadcast_to(GOOD, (64, N, 3))
    np.testing.assert_array_equal(
        render_pafs(many, shape=(6, 6), stride=8), render_pafs(np.ascontiguousarray(many), shape=(6, 6), stride=8)
    )
    np.testing.assert_array_equal(
        render_heatmaps(many, shape=(6, 6), stride=8), render_heatmaps(GOOD, shape=(6, 6), stride=8)
    )


# -- bounded sizes, work and values (issue 17) -----------------------------------------------------
@pytest.mark.parametrize("which", ["heatmaps", "pafs"])
@pytest.mark.parametrize("shape", [(300, 65536), (2048, 2049), (1, 4_194_305)])
def test_sizes_beyond_what_the_decoder_reads_are_refused(which, shape):
    """(300, 65536) PAFs took 106 s and 3 GB; the renderer now draws at most the decoder's map cap."""
    fn = render_heatmaps if which == "heatmaps" else render_pafs
    with pytest.raises(InputError, match=r"height, width|elements|cells"):
        fn(GOOD, shape=shape, stride=8)
    assert _decoder.MAX_MAP_CELLS == 2048 * 2048


@pytest.mark.parametrize("which", ["heatmaps", "pafs"])
def test_work_is_bounded(which):
    """5000 persons whose Gaussians / limb bands each cover a whole 2048 x 2048 map: refused up front
    (it would visit ~10^11 cells) instead of running for hours."""
    crowd = np.broadcast_to(one_person(neck=(100.0, 100.0), right_hip=(16000.0, 16000.0)), (5000, N, 3))
    with pytest.raises(InputError, match=r"would visit .* cells"):
        if which == "heatmaps":
            render_heatmaps(crowd, shape=(2048, 2048), stride=8, sigma=5000)
        else:
            render_pafs(crowd, shape=(2048, 2048), stride=8, width=5000)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stride": 1e-300}, r"stride: must be a finite number in \[0\.01, 1024\], got 1e-300"),
        ({"stride": 1e300}, r"stride: must be a finite number in \[0\.01, 1024\]"),
        ({"keypoints": GOOD.astype(np.float64) * [1e300, 1e300, 1]}, r"keypoints: x and y must be within"),
        ({"keypoints": GOOD.astype(np.float64) - [0, 1e12, 0]}, r"keypoints: x and y must be within"),
    ],
)
@pytest.mark.parametrize("which", ["heatmaps", "pafs"])
def test_values_that_overflow_are_refused(kwargs, match, which):
    """Keypoints near 1e300 px at a tiny stride gave NaN PAFs; such values are refused."""
    args = {"keypoints": GOOD, "shape": (6, 6), "stride": 8}
    args.update(kwargs)
    fn = render_heatmaps if which == "heatmaps" else render_pafs
    with pytest.raises(InputError, match=match):
        fn(args.pop("keypoints"), **args)


def test_sigma_and_width_have_upper_bounds():
    with pytest.raises(InputError, match=r"sigma: must be a finite number in \(0, 10000\]"):
        render_heatmaps(GOOD, shape=(6, 6), stride=8, sigma=1e300)
    with pytest.raises(InputError, match=r"width: must be a finite number in \(0, 10000\]"):
        render_pafs(GOOD, shape=(6, 6), stride=8, width=1e300)


@settings(max_examples=60, deadline=None)
@given(
    xy=hnp.arrays(np.float64, (3, N, 2), elements=st.floats(-1e7, 1e7)),
    visible=hnp.arrays(np.float64, (3, N, 1), elements=st.sampled_from([0.0, 1.0, 2.0])),
    stride=st.floats(0.01, 1024), sigma=st.floats(1e-6, 1e4), width=st.floats(1e-6, 1e4),
    shape=st.tuples(st.integers(1, 24), st.integers(1, 24)),
)
def test_accepted_inputs_give_finite_maps(xy, visible, stride, sigma, width, shape):
    kp = np.concatenate([xy, visible], axis=2)
    heat = render_heatmaps(kp, shape=shape, stride=stride, sigma=sigma)
    paf = render_pafs(kp, shape=shape, stride=stride, width=width)
    assert np.all(np.isfinite(heat)) and np.all(np.isfinite(paf))
    assert heat.min() >= 0 and heat.max() <= 1 and np.abs(paf).max() <= 1 + 1e-6
