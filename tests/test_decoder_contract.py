"""The decoder's input contract: every bad input is a clear error and the decoder still works
after it; caps bound adversarial maps; random small maps never break it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgepose import BODYPOSENET, DecoderConfig, InputError, Poses, _decoder
from edgepose.decode import Decoder

N, K = BODYPOSENET.num_keypoints, BODYPOSENET.num_limbs
H, W = 6, 7


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def poke(shape, value, dtype=np.float32):
    a = np.zeros(shape, dtype)
    a.flat[a.size // 2] = value
    return a


GOOD_H, GOOD_P = (1, H, W, N + 1), (1, H, W, 2 * K)

# (id, kwargs for Decoder.decode, error type, message pattern)
BAD_INPUTS = [
    ("heatmap-rank-2", dict(heatmap=zeros((H, N + 1)), paf=zeros((H, 2 * K))), ValueError, r"heatmap: expected a 4-D"),
    ("heatmap-rank-5", dict(heatmap=zeros((1,) + GOOD_H), paf=zeros((1,) + GOOD_P)), ValueError,
     r"heatmap: expected a 4-D"),
    ("rank-mismatch", dict(heatmap=zeros(GOOD_H[1:]), paf=zeros(GOOD_P)), InputError, r"both be one image"),
    ("heatmap-channels", dict(heatmap=zeros((1, H, W, N)), paf=zeros(GOOD_P)), ValueError,
     r"heatmap: expected 19 channels .*got 18"),
    ("paf-channels", dict(heatmap=zeros(GOOD_H), paf=zeros((1, H, W, 2 * K - 1))), ValueError,
     r"paf: expected 38 channels .*got 37"),
    ("nhwc-as-nchw", dict(heatmap=zeros(GOOD_H), paf=zeros(GOOD_P), layout="NCHW"), ValueError,
     r"heatmap: expected 19 channels"),
    ("batch-differs", dict(heatmap=zeros((2, H, W, N + 1)), paf=zeros(GOOD_P)), ValueError,
     r"batch sizes differ: 2 vs 1"),
    ("heatmap-empty-h", dict(heatmap=zeros((1, 0, W, N + 1)), paf=zeros(GOOD_P)), ValueError, r"heatmap: empty map"),
    ("paf-empty-w", dict(heatmap=zeros(GOOD_H), paf=zeros((1, H, 0, 2 * K))), ValueError, r"paf: empty map"),
    ("heatmap-stride-0", dict(heatmap_stride=0), ValueError, r"heatmap_stride must be a positive finite"),
    ("heatmap-stride-neg", dict(heatmap_stride=-8), ValueError, r"heatmap_stride must be a positive finite"),
    ("heatmap-stride-nan", dict(heatmap_stride=float("nan")), ValueError, r"heatmap_stride must be a positive finite"),
    ("paf-stride-inf", dict(paf_stride=float("inf")), ValueError, r"paf_stride must be a positive finite"),
    ("paf-stride-0", dict(paf_stride=0.0), ValueError, r"paf_stride must be a positive finite"),
    ("layout", dict(layout="NWHC"), ValueError, r"layout must be 'NHWC' or 'NCHW', got 'NWHC'"),
    ("layout-lower", dict(layout="nhwc"), ValueError, r"layout must be"),
    ("dtype-complex", dict(heatmap=zeros(GOOD_H, np.complex64)), InputError, r"heatmap: expected a numeric array"),
    ("dtype-str", dict(paf=np.full(GOOD_P, "x")), InputError, r"paf: expected a numeric array"),
    ("heatmap-nan", dict(heatmap=poke(GOOD_H, np.nan)), ValueError, r"heatmap: contains NaN or infinity"),
    ("paf-inf", dict(paf=poke(GOOD_P, -np.inf)), ValueError, r"paf: contains NaN or infinity"),
    ("heatmap-f16-inf", dict(heatmap=poke(GOOD_H, np.inf, np.float16), paf=zeros(GOOD_P, np.float16)), ValueError,
     r"heatmap: contains NaN or infinity"),
    ("f64-nan", dict(paf=poke(GOOD_P, np.nan, np.float64)), ValueError, r"paf: contains NaN or infinity"),
    ("heatmap-too-big", dict(heatmap=np.broadcast_to(np.float32(0), (1, 2049, 2048, N + 1))), ValueError,
     r"heatmap: 2049 x 2048 cells exceed the limit"),
    ("paf-too-big", dict(paf=np.broadcast_to(np.float32(0), (1, 1, 5_000_000, 2 * K))), ValueError,
     r"paf: 1 x 5000000 cells exceed the limit"),
]


@pytest.fixture(scope="module")
def golden(golden_maps):
    """A real frame and what the decoder makes of it: the decoder must still give this after errors."""
    h, p, layout = golden_maps["tfpose_mobilenet_thin"]
    want = Decoder().decode(h, p, heatmap_stride=8, layout=layout)[0]
    assert len(want) >= 3
    return h, p, layout, want


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_a_clear_error(golden, case):
    _, kwargs, error, pattern = case
    args = dict(heatmap=zeros(GOOD_H), paf=zeros(GOOD_P), heatmap_stride=8.0)
    args.update(kwargs)
    dec = Decoder()
    with pytest.raises(error, match=pattern):
        dec.decode(args.pop("heatmap"), args.pop("paf"), **args)
    h, p, layout, want = golden
    again = dec.decode(h, p, heatmap_stride=8, layout=layout)[0]
    assert again.allclose(want), again.diff(want)


BAD_TOPOLOGY = [
    ("limbs-shape", dict(limbs=np.zeros((K, 3), np.int32)), r"limbs: expected shape \(K, 4\)"),
    ("starts-length", dict(starts_person=np.ones(K - 1, np.uint8)), r"starts_person: expected shape \(19,\)"),
    ("limb-keypoint", dict(limbs=np.array([[0, 18, 0, 1]] * K, np.int32)), r"limbs: row 0 joins keypoints \(0, 18\)"),
    ("limb-self", dict(limbs=np.array([[3, 3, 0, 1]] * K, np.int32)), r"limbs: row 0 joins keypoints \(3, 3\)"),
    ("limb-channel", dict(limbs=np.array([[0, 1, 0, 38]] * K, np.int32)), r"limbs: row 0 uses PAF channels \(0, 38\)"),
    ("no-limbs", dict(limbs=np.zeros((0, 4), np.int32), starts_person=np.zeros(0, np.uint8)), r"at least one limb"),
    ("keypoints", dict(num_keypoints=0), r"num_keypoints must be in 1..1024"),
    ("config-unknown", dict(config={"peak_treshold": 0.1}), r"config: unknown field 'peak_treshold'"),
    ("config-type", dict(config={"max_peaks": "many"}), r"config: field 'max_peaks' has the wrong type"),
    ("config-range", dict(config={"max_peaks": 0}), r"config: max_peaks must be in 1..1024, got 0"),
    ("config-nan", dict(config={"paf_threshold": float("nan")}), r"config: paf_threshold must be a finite number"),
    ("config-choice", dict(config={"matching": "hungarian"}), r"config: matching must be one of greedy, optimal"),
    ("config-samples", dict(config={"paf_samples": 30, "max_paf_samples": 25}), r"max_paf_samples must be in"),
]


@pytest.mark.parametrize("case", BAD_TOPOLOGY, ids=[c[0] for c in BAD_TOPOLOGY])
def test_bad_topology_or_config_is_a_clear_error(case):
    _, kwargs, pattern = case
    args = dict(limbs=BODYPOSENET.limb_array(), starts_person=BODYPOSENET.starts_person_array(), num_keypoints=N,
                config=DecoderConfig().to_dict())
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        _decoder.Decoder(**args)


def test_empty_maps_give_no_persons():
    for dtype in (np.float32, np.float16):
        poses = Decoder().decode(zeros((1, 1, N + 1), dtype), zeros((1, 1, 2 * K), dtype), heatmap_stride=8)
        assert isinstance(poses, Poses) and len(poses) == 0 and poses.keypoints.shape == (0, N, 3)
    assert Decoder().decode(zeros((0, H, W, N + 1)), zeros((0, H, W, 2 * K)), heatmap_stride=8) == []


def test_broadcast_huge_maps_stay_bounded():
    """np.broadcast_to maps at the size cap cost no memory; the decoder reads each distinct value
    once for the finiteness scan and keeps at most one peak per channel on the plateau."""
    side = 2048
    assert side * side == _decoder.MAX_MAP_CELLS
    h = np.broadcast_to(np.float32(0.9), (3, side, side, N + 1))
    p = np.broadcast_to(np.float32(0.6), (3, side, side, 2 * K))
    out = Decoder(config=DecoderConfig(max_persons=2)).decode(h, p, heatmap_stride=8)
    assert len(out) == 3
    for poses in out:
        assert len(poses) <= 2
        # A plateau yields one peak per keypoint, at its first cell (raster order), refined
        # by at most half a cell: the keypoints sit at the top-left corner.
        vis = poses.keypoints[poses.visible]
        assert np.all(vis[:, :2] <= 8.0)


@pytest.mark.parametrize("matching", ["greedy", "optimal"])
def test_every_pixel_a_peak_is_capped(matching):
    """A lattice with a peak in every other cell of every other row (4096 per channel, 3x3 NMS) and
    a PAF that passes every pair: max_peaks, the per-limb candidate bound and max_persons keep it
    bounded, and the peaks kept are the strongest. Strength grows down the rows, so keeping the
    first peaks in raster order would keep the weakest."""
    side = 128
    rows = side // 2  # lattice rows, row r at map row 2r
    h = np.zeros((side, side, N + 1), np.float32)
    h[::2, ::2, :N] = 1.0 - (rows - 1 - np.arange(rows, dtype=np.float32))[:, None, None] * 1e-3
    p = np.broadcast_to(np.float32(0.7), (side, side, 2 * K))

    def lattice_rows(y: np.ndarray) -> np.ndarray:
        """The lattice row of each keypoint y (no refinement moves a peak whose neighbours are 0)."""
        r = ((y + 0.5) / 8 - 0.5) / 2
        assert np.array_equal(r, np.round(r))
        return r.astype(int)

    config = DecoderConfig(max_peaks=1024, max_persons=25, matching=matching, min_parts=1, min_person_score=0.0,
                           nms_radius=1)
    poses = Decoder(config=config).decode(h, p, heatmap_stride=8)
    assert 1 <= len(poses) <= 25
    assert np.all(np.isfinite(poses.scores))
    # The strongest 1024 peaks of a channel are its last 16 lattice rows (64 peaks each).
    found = poses.keypoints[poses.visible]
    assert lattice_rows(found[:, 1]).min() >= rows - 1024 // 64 and found[:, 2].max() == 1.0
    # With room for every kept peak as a person (min_parts 1), each channel shows exactly its
    # strongest max_peaks peaks, each once.
    poses = Decoder(config=config.replace(max_peaks=512, max_persons=10000)).decode(h, p, heatmap_stride=8)
    assert poses.visible.sum() == N * 512
    for c in range(N):
        xy = poses.keypoints[poses.visible[:, c], c, :2]
        assert len({(x, y) for x, y in xy.tolist()}) == 512
        assert np.array_equal(np.unique(lattice_rows(xy[:, 1])), np.arange(rows - 512 // 64, rows)), c


LAYOUTS = st.sampled_from(["NHWC", "NCHW"])


@st.composite
def small_maps(draw):
    dtype = draw(st.sampled_from([np.float32, np.float16, np.float64]))
    b = draw(st.integers(1, 2))
    hh, hw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    factor = draw(st.sampled_from([1, 2]))
    values = st.floats(-0.5, 1.5, width=16)
    heat = draw(hnp.arrays(dtype, (b, hh, hw, N + 1), elements=values))
    paf = draw(hnp.arrays(dtype, (b, hh * factor, hw * factor, 2 * K), elements=st.floats(-1.25, 1.25, width=16)))
    layout = draw(LAYOUTS)
    if layout == "NCHW":
        heat, paf = heat.transpose(0, 3, 1, 2), paf.transpose(0, 3, 1, 2)
    stride = draw(st.sampled_from([1.0, 4.0, 8.0]))
    config = DecoderConfig(
        min_parts=draw(st.integers(1, 3)), min_person_score=0.0, refine=draw(st.sampled_from(["none", "gaussian",
                                                                                             "centroid", "quadratic"])),
        matching=draw(st.sampled_from(["greedy", "optimal"])), assembly_order=draw(st.sampled_from(["limb", "score"])),
        min_sample_fraction=draw(st.sampled_from([0.0, 0.5, 0.8])), paf_sample_step=draw(st.sampled_from([0.0, 0.5])),
        nms_radius=draw(st.integers(0, 2)), max_persons=draw(st.integers(1, 5)),
    )
    return heat, paf, layout, stride, factor, config


@settings(max_examples=150, deadline=None)
@given(small_maps())
def test_random_small_maps_give_well_formed_poses(case):
    heat, paf, layout, stride, factor, config = case
    out = Decoder(config=config).decode(heat, paf, heatmap_stride=stride, paf_stride=stride / factor, layout=layout)
    hh, hw = (heat.shape[1], heat.shape[2]) if layout == "NHWC" else (heat.shape[2], heat.shape[3])
    assert len(out) == heat.shape[0]
    for poses in out:
        assert isinstance(poses, Poses) and poses.keypoints.shape[1:] == (N, 3)
        assert len(poses) <= config.max_persons
        assert np.all(np.isfinite(poses.scores)) and np.all(np.isfinite(poses.keypoints))
        kp = poses.keypoints
        vis = poses.visible
        assert np.all(kp[~vis] == 0)
        # Inside the input image's extent: cell centres +- half a cell.
        assert np.all(kp[vis, 0] >= -0.5) and np.all(kp[vis, 0] <= hw * stride - 0.5)
        assert np.all(kp[vis, 1] >= -0.5) and np.all(kp[vis, 1] <= hh * stride - 0.5)
        assert np.all(kp[vis, 2] > config.peak_threshold)
        assert np.all(vis.sum(axis=1) >= config.min_parts)
