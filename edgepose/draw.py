"""Skeleton overlays: draw :class:`Poses` on a frame with OpenCV.

    annotated = edgepose.draw.draw(frame, poses)      # a copy; ``frame`` is untouched
    poses.draw(frame)                                  # the same, from the result

Each limb has its own colour (hues spread over the colour wheel in topology order, so left and
right limbs differ); keypoints are filled dots, coloured per keypoint type. Missing keypoints, and
limbs with a missing end, are not drawn. Coordinates are sub-pixel: OpenCV's ``shift`` keeps 4
fractional bits. Tracked poses (``poses.ids`` set, see :mod:`edgepose.tracking`) are drawn one
colour per person, chosen from the id (the same person keeps its colour over a video), with the
id written above the person; persons without an id (-1) are drawn grey.
"""

from __future__ import annotations

import colorsys
from typing import List, Optional, Tuple

import cv2
import numpy as np

from .errors import InputError
from .results import Poses

__all__ = ["draw", "id_color", "limb_colors"]

# OpenCV drawing functions take fixed-point coordinates with this many fractional bits.
_SHIFT = 4
_SCALE = 1 << _SHIFT

Color = Tuple[int, int, int]


def limb_colors(count: int) -> List[Color]:
    """``count`` distinct, saturated BGR colours, spread evenly over the hue circle."""
    out = []
    for k in range(count):
        r, g, b = colorsys.hsv_to_rgb(k / max(count, 1), 1.0, 1.0)
        out.append((int(b * 255), int(g * 255), int(r * 255)))
    return out


_UNTRACKED: Color = (160, 160, 160)


def id_color(track_id: int) -> Color:
    """A saturated BGR colour for a track id: hues stepped by the golden ratio, so consecutive ids
    differ strongly; grey for -1 (no id)."""
    if track_id < 0:
        return _UNTRACKED
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.85, 1.0)
    return (int(b * 255), int(g * 255), int(r * 255))


def _draw_id(out: np.ndarray, text: str, xy: Tuple[int, int], color: Color) -> None:
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    x = min(max(xy[0], 0), max(out.shape[1] - w, 0))
    y = min(max(xy[1], h + 1), out.shape[0] - base)
    cv2.rectangle(out, (x - 1, y - h - 2), (x + w + 1, y + base), (0, 0, 0), -1)
    cv2.putText(out, text, (x, y), font, scale, color, thick, cv2.LINE_AA)


def _check_frame(frame: object, copy: bool) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frame: expected an (H, W, 3) uint8 BGR image, got {frame.shape} {frame.dtype}")
    if not copy and not (frame.flags.c_contiguous and frame.flags.writeable):
        # OpenCV would silently draw into a temporary copy of a strided or read-only array.
        raise InputError("frame: drawing in place (copy=False) needs a writable C-contiguous array")
    return frame


def draw(
    frame: np.ndarray,
    poses: Poses,
    *,
    thickness: int = 2,
    radius: int = 3,
    copy: bool = True,
    keypoint_color: Optional[Color] = None,
    show_ids: bool = True,
) -> np.ndarray:
    """Draw the skeletons of ``poses`` on ``frame`` (H, W, 3 uint8 BGR).

    Args:
        frame: the image; ``poses`` must be in its pixels (``EdgePose.infer`` returns them so).
        poses: the persons to draw.
        thickness: limb line width in pixels (0 draws no limbs).
        radius: keypoint dot radius in pixels (0 draws no dots).
        copy: draw on a copy (default) and leave ``frame`` untouched; ``False`` draws in place.
        keypoint_color: one BGR colour for every keypoint dot (default: a colour per keypoint type).
        show_ids: for tracked poses, colour each person by its id and write the id (default True).
    Returns:
        The annotated image: a new array, or ``frame`` itself when ``copy=False``.
    Raises:
        InputError: ``frame`` is not an (H, W, 3) uint8 image (or cannot be drawn in place).
    """
    frame = _check_frame(frame, copy)
    if not isinstance(poses, Poses):
        raise TypeError(f"poses: expected Poses, got {type(poses).__name__}")
    if thickness < 0 or radius < 0:
        raise ValueError(f"thickness and radius must be >= 0, got {thickness} and {radius}")
    out = frame.copy() if copy else frame
    topology = poses.topology
    colors = limb_colors(topology.num_limbs)
    dot_colors = [keypoint_color] * topology.num_keypoints if keypoint_color else limb_colors(topology.num_keypoints)
    # Non-finite coordinates cannot be drawn; treat them as missing.
    present = poses.visible & np.isfinite(poses.xy).all(axis=2)
    fixed = np.zeros(poses.xy.shape, np.int64)
    fixed[present] = np.round(poses.xy[present] * _SCALE).astype(np.int64)
    by_id = show_ids and poses.ids is not None
    for m in range(len(poses)):
        if by_id:
            person = id_color(int(poses.ids[m]))
            colors = [person] * topology.num_limbs
            dot_colors = [keypoint_color or person] * topology.num_keypoints
        if thickness > 0:
            for (a, b), color in zip(topology.limbs, colors):
                if present[m, a] and present[m, b]:
                    pa, pb = tuple(int(v) for v in fixed[m, a]), tuple(int(v) for v in fixed[m, b])
                    cv2.line(out, pa, pb, color, thickness, cv2.LINE_AA, _SHIFT)
        if radius > 0:
            for n in np.flatnonzero(present[m]):
                center = tuple(int(v) for v in fixed[m, n])
                cv2.circle(out, center, radius * _SCALE, dot_colors[n], -1, cv2.LINE_AA, _SHIFT)
        if by_id and poses.ids[m] >= 0 and present[m].any():
            top = poses.xy[m][present[m]]
            _draw_id(out, str(int(poses.ids[m])), (int(top[:, 0].min()), int(top[:, 1].min()) - 6), colors[0])
    return out
