"""edgepose.draw: skeleton overlays change pixels along limbs and never the caller's frame."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose import BODYPOSENET, InputError, Poses
from edgepose.draw import draw, limb_colors


def _one_person() -> Poses:
    """A person with a neck, right shoulder and right elbow; everything else missing."""
    kp = np.zeros((1, BODYPOSENET.num_keypoints, 3), np.float32)
    kp[0, BODYPOSENET.index("neck")] = (50.0, 20.0, 0.9)
    kp[0, BODYPOSENET.index("right_shoulder")] = (20.0, 20.0, 0.8)
    kp[0, BODYPOSENET.index("right_elbow")] = (20.0, 70.0, 0.7)
    return Poses(kp, np.array([0.8], np.float32))


def test_limbs_change_pixels_along_the_segment_and_input_is_untouched():
    frame = np.zeros((100, 120, 3), np.uint8)
    before = frame.copy()
    out = draw(frame, _one_person(), thickness=2, radius=0)
    assert np.array_equal(frame, before), "draw() modified the caller's frame"
    assert out is not frame
    # Pixels halfway along neck -> right shoulder (horizontal) and shoulder -> elbow (vertical).
    assert out[20, 35].any() and out[45, 20].any()
    # The two limbs have different colours.
    assert not np.array_equal(out[20, 35], out[45, 20])
    # Far from every limb nothing changed; no limb to the missing hips was drawn.
    assert not out[90, 100].any()
    assert not out[60:, 40:].any()


def test_keypoint_dots_drawn_and_missing_keypoints_skipped():
    out = draw(np.zeros((100, 120, 3), np.uint8), _one_person(), thickness=0, radius=3)
    for name in ("neck", "right_shoulder", "right_elbow"):
        x, y, _ = _one_person().keypoints[0, BODYPOSENET.index(name)]
        assert out[int(y), int(x)].any(), name
    # Only the three dots: every changed pixel is within radius + 1 of one of them.
    ys, xs = np.nonzero(out.any(axis=2))
    centres = np.array([(20, 50), (20, 20), (70, 20)])
    d = np.min(np.hypot(ys[:, None] - centres[:, 0], xs[:, None] - centres[:, 1]), axis=1)
    assert d.max() <= 4.5


def test_copy_false_draws_in_place_and_poses_draw_is_the_same():
    frame = np.zeros((100, 120, 3), np.uint8)
    expected = draw(frame, _one_person())
    out = draw(frame, _one_person(), copy=False)
    assert out is frame and np.array_equal(frame, expected)
    assert np.array_equal(_one_person().draw(np.zeros_like(frame)), expected)


def test_empty_poses_and_out_of_frame_keypoints():
    frame = np.full((40, 50, 3), 7, np.uint8)
    assert np.array_equal(draw(frame, Poses.empty()), frame)
    kp = np.zeros((1, 18, 3), np.float32)
    kp[0, :, :2] = (-500.0, 1e6)
    kp[0, :, 2] = 1.0
    far = draw(frame, Poses(kp, np.ones(1, np.float32)))  # clipped by OpenCV, no crash
    assert far.shape == frame.shape


@pytest.mark.parametrize(
    "frame, match",
    [
        (np.zeros((10, 10), np.uint8), r"\(H, W, 3\) uint8"),
        (np.zeros((10, 10, 3), np.float32), r"\(H, W, 3\) uint8"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_frames_are_input_errors(frame, match):
    with pytest.raises(InputError, match=match):
        draw(frame, _one_person())


def test_copy_false_refuses_a_strided_view():
    frame = np.zeros((100, 240, 3), np.uint8)[:, ::2]
    with pytest.raises(InputError, match="copy=False"):
        draw(frame, _one_person(), copy=False)
    assert draw(frame, _one_person()).any()  # a copy is fine


def test_limb_colors_distinct():
    colors = limb_colors(BODYPOSENET.num_limbs)
    assert len(set(colors)) == BODYPOSENET.num_limbs
