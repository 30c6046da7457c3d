"""The decoder's edges (issues 17 and 18): misaligned maps, strides that cannot be right, Ctrl-C
in a long batch, one exception family, and the exact boundary of every threshold."""

from __future__ import annotations

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
