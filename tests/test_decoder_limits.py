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
