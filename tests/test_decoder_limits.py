"""The decoder's edges (issues 17 and 18): misaligned maps, strides that cannot be right, Ctrl-C
in a long batch, one exception family, and the exact boundary of every threshold."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgepose.decode import Decoder


def real_maps(golden_maps, model="tfpose_mobilenet_thin"):
    h, p, layout = golden_maps[model]
    if layout == "NCHW":
        h, p = h.transpose(0, 2, 3, 1), p.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(h[0]), np.ascontiguousarray(p[0])


def assert_same_poses(a, b):
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.scores, b.scores)


def misaligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` whose data starts one byte past an element boundary."""
    buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
    out = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and not out.flags.aligned
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_misaligned_contiguous_maps_are_copied_not_refused(golden_maps, dtype):
    h, p = (m.astype(dtype) for m in real_maps(golden_maps))
    dec = Decoder()
    want = dec.decode(h, p, heatmap_stride=8)
    assert len(want) >= 3
    assert_same_poses(dec.decode(misaligned(h), misaligned(p), heatmap_stride=8), want)
    # a batch, and one misaligned map beside an aligned one
    got = dec.decode(misaligned(h[np.newaxis]), p[np.newaxis], heatmap_stride=8)
    assert len(got) == 1
    assert_same_poses(got[0], want)


# -- one exception family -------------------------------------------------------------------------
def test_cpp_input_errors_are_edgepose_input_errors():
    from edgepose import EdgePoseError, InputError, _decoder, render_pafs

    h = np.zeros((6, 7, 19), np.float32)
    p = np.zeros((6, 7, 38), np.float32)
    h[2, 3, 0] = np.nan
    with pytest.raises(EdgePoseError, match="heatmap: contains NaN") as e:
        Decoder().decode(h, p, heatmap_stride=8)
    assert type(e.value) is InputError and isinstance(e.value, ValueError)
    with pytest.raises(InputError, match="heatmap_stride"):  # a check made in C++ before any value is read
        Decoder().decode(np.zeros((6, 7, 19), np.float32), p, heatmap_stride=-1)
    with pytest.raises(InputError, match="config: unknown field"):
        _decoder.Decoder(np.zeros((1, 4), np.int32), np.ones(1, np.uint8), 2, {"nope": 1})
    with pytest.raises(InputError, match="stride"):  # the renderer's checks, in C++ too
        render_pafs(np.zeros((1, 18, 3)), shape=(4, 4), stride=0)


# -- strides and sizes that cannot be right --------------------------------------------------------
@pytest.mark.parametrize("name", ["heatmap_stride", "paf_stride"])
@pytest.mark.parametrize("value", [1e-30, 1e-3, 2000.0, 1e37])
def test_strides_out_of_a_sane_range_are_refused(golden_maps, name, value):
    from edgepose import InputError

    h, p = real_maps(golden_maps)
    kwargs = dict(heatmap_stride=8.0, paf_stride=8.0)
    kwargs[name] = value
    pattern = rf"{name} must be .* in \[0\.01, 1024\], got {re.escape(format(value, 'g'))}$"
    with pytest.raises(InputError, match=pattern):
        Decoder().decode(h, p, **kwargs)


def test_the_ends_of_the_stride_range_decode(golden_maps):
    """Strides only scale the output (docs/decoder.md section 0): the same persons at either end."""
    h, p = real_maps(golden_maps)
    dec = Decoder()
    want = dec.decode(h, p, heatmap_stride=8)
    for s in (0.01, 1024.0):
        got = dec.decode(h, p, heatmap_stride=s)
        assert len(got) == len(want) >= 3
        np.testing.assert_array_equal(got.visible, want.visible)
        np.testing.assert_array_equal(got.scores, want.scores)
        vis = want.visible
        np.testing.assert_allclose(got.keypoints[vis][:, :2], (want.keypoints[vis][:, :2] + 0.5) / 8 * s - 0.5,
                                   rtol=1e-5, atol=1e-4)


def test_a_paf_stride_that_does_not_fit_the_maps_is_refused(golden_maps):
    """The README's old example: 46 x 69 PAFs at stride 2 beside a 46 x 69 heatmap at stride 8 cover
    92 x 138 and 368 x 552 input pixels; that decoded to 0 persons without a word."""
    from edgepose import InputError

    h, p = real_maps(golden_maps)
    assert h.shape[:2] == p.shape[:2] == (46, 69)
    pattern = r"paf_stride.*46 x 69 cells at stride 8 cover 368 x 552 .*46 x 69 cells at stride 2 cover 92 x 138"
    with pytest.raises(InputError, match=pattern):
        Decoder().decode(h, p, heatmap_stride=8, paf_stride=2)
    # The same PAF at 4x the resolution fits stride 2; within one cell of the coarser map fits too
    # (a network's output sizes round the input size up or down).
    p4 = np.ascontiguousarray(p.repeat(4, axis=0).repeat(4, axis=1))
    assert len(Decoder().decode(h, p4, heatmap_stride=8, paf_stride=2)) >= 3
    assert len(Decoder().decode(h, p4[:-3, 1:], heatmap_stride=8, paf_stride=2)) >= 3
    with pytest.raises(InputError, match="paf_stride"):
        Decoder().decode(h, p4[:-5], heatmap_stride=8, paf_stride=2)  # 10 pixels short: more than a cell
    with pytest.raises(InputError, match="paf_stride"):
        Decoder().decode(h, p4, heatmap_stride=8, paf_stride=8)


@pytest.mark.parametrize("input_size", [(7, 7), (368, 24), 16])
def test_an_input_size_too_small_for_the_maps_is_refused(input_size):
    from conftest import MODELS, need

    from edgepose import EdgePose, SpecError

    model = need(MODELS / "omz_human_pose_estimation_0001.onnx")
    with pytest.raises(SpecError, match=r"input_size .* at least 4 cells .* at least 32 pixels"):
        EdgePose(str(model), input_size=input_size, threads=1)
    with EdgePose(str(model), input_size=(32, 32), threads=1) as m:  # 4 x 4 cells: accepted
        assert len(m.infer(np.full((40, 40, 3), 128, np.uint8))) == 0


# -- Ctrl-C ----------------------------------------------------------------------------------------
CHILD = r"""
import sys, numpy as np
from edgepose import DecoderConfig
from edgepose.decode import Decoder
d = np.load(sys.argv[1])
h = np.broadcast_to(d["h"], (10**6,) + d["h"].shape)   # a million frames, one image's memory
p = np.broadcast_to(d["p"], (10**6,) + d["p"].shape)
dec = Decoder(config=DecoderConfig(min_parts=19))       # all the work, no person kept: small results
print("ready", flush=True)
try:
    dec.decode(h, p, heatmap_stride=8)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
print("finished", flush=True)
"""


def test_a_long_batch_stops_on_ctrl_c(golden_maps, tmp_path):
    """SIGINT during a batch of 10^6 frames (minutes of work) raises KeyboardInterrupt inside decode();
    the decoder looked at signals only after the whole batch."""
    import signal
    import subprocess
    import sys
    import time

    h, p = real_maps(golden_maps)
    maps = tmp_path / "maps.npz"
    np.savez(maps, h=h, p=p)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(maps)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(1.0)  # well inside the batch
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)  # a hang guard only: the batch itself takes minutes
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert (child.returncode, out.strip()) == (3, "interrupted"), err


# -- each threshold's boundary (docs/decoder.md states the strictness) --------------------------------
# Two keypoints joined by one limb, stride 1, no refinement: peaks A at (row 1, col 1) and B at
# (row 1, col 1 + L); with paf_samples = L + 1 and L a power of two every sample falls exactly on a
# cell centre, so each projection is exactly the PAF value stored there (0.25 and 0.5 are exact in
# float16 too) and a threshold can be met with equality.
def _pair_topology():
    from edgepose import Topology

    return Topology(name="pair", keypoints=("a", "b"), limbs=((0, 1),), paf_channels=((0, 1),),
                    starts_person=(True,))


def pair_maps(peak=0.5, field=0.25, length=8, passing=None, dtype=np.float32, layout="NHWC"):
    """heatmap (3, length + 3, 3) with peaks `peak` at A and B; PAF x-component `field` on row 1 (or 1.0
    on the first `passing` sample cells and 0 beyond)."""
    w = length + 3
    heat = np.zeros((3, w, 3), np.float64)
    heat[1, 1, 0] = heat[1, 1 + length, 1] = peak
    paf = np.zeros((3, w, 2), np.float64)
    if passing is None:
        paf[:, :, 0] = field
    else:
        paf[:, 1:1 + passing, 0] = 1.0
    heat, paf = heat.astype(dtype), paf.astype(dtype)
    if layout == "NCHW":
        heat, paf = heat.transpose(2, 0, 1), paf.transpose(2, 0, 1)
    return heat, paf


def persons(config, *, reference=False, layout="NHWC", dtype=np.float32, **maps):
    from edgepose import DecoderConfig
    from edgepose._reference import decode_reference

    base = dict(refine="none", nms_radius=1, paf_samples=9, max_paf_samples=9, min_parts=1, min_person_score=0.0,
                nearest_partners=0)
    base.update(config)
    heat, paf = pair_maps(dtype=dtype, layout=layout, **maps)
    fn = decode_reference if reference else Decoder(_pair_topology(), DecoderConfig(**base)).decode
    kwargs = dict(topology=_pair_topology(), config=DecoderConfig(**base)) if reference else {}
    poses = fn(heat, paf, heatmap_stride=1, layout=layout, **kwargs)
    return poses


def below(x):
    return float(np.nextafter(x, -np.inf))


def above(x):
    return float(np.nextafter(x, np.inf))


BOUNDARY = pytest.mark.parametrize("reference, layout, dtype", [
    (False, "NHWC", np.float32), (False, "NCHW", np.float32), (False, "NHWC", np.float16),
    (False, "NCHW", np.float16), (True, "NHWC", np.float32)], ids=["cpp-nhwc", "cpp-nchw", "cpp-nhwc-f16",
                                                                  "cpp-nchw-f16", "reference"])


@BOUNDARY
def test_peak_threshold_is_strict(reference, layout, dtype):
    """Section 1.1: a peak needs v > peak_threshold."""
    run = dict(reference=reference, layout=layout, dtype=dtype)
    assert len(persons({"peak_threshold": 0.5}, **run)) == 0
    got = persons({"peak_threshold": below(0.5)}, **run)
    assert len(got) == 1 and got.visible.sum() == 2


@BOUNDARY
def test_paf_threshold_is_strict(reference, layout, dtype):
    """Section 2.4: a sample counts when q > paf_threshold (here every q is exactly 0.25)."""
    run = dict(reference=reference, layout=layout, dtype=dtype)
    cfg = {"min_parts": 2, "min_sample_fraction": 0.0}  # one passing sample would do (count > 0)
    assert len(persons({**cfg, "paf_threshold": 0.25}, **run)) == 0
    assert len(persons({**cfg, "paf_threshold": below(0.25)}, **run)) == 1


@BOUNDARY
def test_min_sample_fraction_is_inclusive(reference, layout, dtype):
    """Section 2.5: keep when count >= min_sample_fraction * n: 4 passing of 8 samples at fraction 0.5."""
    run = dict(reference=reference, layout=layout, dtype=dtype)
    cfg = {"min_parts": 2, "paf_samples": 8, "max_paf_samples": 8, "min_sample_fraction": 0.5}
    assert len(persons(cfg, length=7, passing=4, **run)) == 1
    assert len(persons(cfg, length=7, passing=3, **run)) == 0
    assert len(persons({**cfg, "min_sample_fraction": above(0.5)}, length=7, passing=4, **run)) == 0


@BOUNDARY
def test_min_limb_score_is_strict(reference, layout, dtype):
    """Section 2.7: keep when the limb score (here the mean of nine projections of 0.25) > min_limb_score."""
    run = dict(reference=reference, layout=layout, dtype=dtype)
    cfg = {"min_parts": 2, "paf_threshold": 0.0}
    assert len(persons({**cfg, "min_limb_score": 0.25}, **run)) == 0
    assert len(persons({**cfg, "min_limb_score": below(0.25)}, **run)) == 1


@BOUNDARY
def test_min_parts_and_min_person_score_are_inclusive(reference, layout, dtype):
    """Section 5.1: keep when parts >= min_parts and total / parts >= min_person_score. The person:
    two peaks of 0.5 and a limb of 0.25, total 1.25, mean 0.625 (exact)."""
    run = dict(reference=reference, layout=layout, dtype=dtype)
    got = persons({"min_parts": 2, "min_person_score": 0.625, "person_score": "mean"}, **run)
    assert len(got) == 1 and got.scores[0] == 0.625
    assert len(persons({"min_parts": 3}, **run)) == 0
    assert len(persons({"min_parts": 2, "min_person_score": above(0.625)}, **run)) == 0


def test_found_by_the_fuzz_test_negative_peak_threshold_and_tiny_tao_totals():
    """A negative peak_threshold let peaks of score <= 0 into persons (keypoints with coordinates
    but 'not visible', persons with fewer visible parts than min_parts); a `tao` person of total
    2e-40 scored -inf in float32. peak_threshold must be >= 0, and tao uses max(total, 1e-6)."""
    from edgepose import DecoderConfig

    with pytest.raises(ValueError, match="peak_threshold must be >= 0"):
        DecoderConfig(peak_threshold=-0.1)
    from edgepose import _decoder

    with pytest.raises(ValueError, match="config: peak_threshold must be >= 0"):
        _decoder.Decoder(np.array([[0, 1, 0, 1]], np.int32), np.ones(1, np.uint8), 2, {"peak_threshold": -0.1})
    cfg = {"peak_threshold": 0.0, "paf_threshold": -1.0, "min_limb_score": -1.0, "min_parts": 2,
           "min_person_score": -1.0, "person_score": "tao"}
    for reference in (False, True):
        got = persons(cfg, peak=1e-40, field=0.0, reference=reference)
        assert len(got) == 1 and got.visible.sum() == 2
        assert got.scores[0] == np.float32(1.0 - 1.0 / 1e-6)


# -- a crowd of 100 ---------------------------------------------------------------------------------
def whole_people(poses, keypoints, tol=4.0):
    """How many rendered people a decoded person reproduces whole: exactly their drawn keypoints,
    each within `tol` pixels."""
    found = 0
    drawn = keypoints[:, :, 2] > 0
    for m in range(len(keypoints)):
        same_parts = np.all(poses.visible == drawn[m], axis=1)
        err = np.abs(poses.keypoints[:, :, :2] - keypoints[m, :, :2].astype(np.float32))
        close = np.all((err <= tol) | ~drawn[m][None, :, None], axis=(1, 2))
        found += bool(np.any(same_parts & close))
    return found


def test_the_default_config_decodes_a_crowd_of_100_whole():
    """max_peaks 64 kept 64 necks of 100: only a fraction of synthetic_crowd(100) came out whole."""
    from edgepose import DecoderConfig
    from edgepose.bench import synthetic_crowd

    heat, paf, keypoints = synthetic_crowd(100)
    poses = Decoder().decode(heat, paf, heatmap_stride=8)
    assert DecoderConfig().max_peaks >= 100 and DecoderConfig().max_persons >= 100
    assert whole_people(poses, keypoints) == 100
    assert whole_people(Decoder(config=DecoderConfig(max_peaks=64)).decode(heat, paf, heatmap_stride=8),
                        keypoints) < 64
