"""Skeleton overlays: draw :class:`Poses` on a frame with OpenCV.

    annotated = edgepose.draw.draw(frame, poses)      # a copy; ``frame`` is untouched
    poses.draw(frame)                                  # the same, from the result

Each limb has its own colour (hues spread over the colour wheel in topology order, so left and
right limbs differ); keypoints are filled dots, coloured per keypoint type. Missing keypoints, and
limbs with a missing end, are not drawn. Coordinates are sub-pixel: OpenCV's ``shift`` keeps 4
fractional bits.
"""

from __future__ import annotations

import colorsys
from typing import List, Optional, Tuple

import cv2
import numpy as np

from .errors import InputError
from .results import Poses

__all__ = ["draw", "limb_colors"]

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
) -> np.ndarray:
    """Draw the skeletons of ``poses`` on ``frame`` (H, W, 3 uint8 BGR).

    Args:
        frame: the image; ``poses`` must be in its pixels (``EdgePose.infer`` returns them so).
        poses: the persons to draw.
        thickness: limb line width in pixels (0 draws no limbs).
        radius: keypoint dot radius in pixels (0 draws no dots).
        copy: draw on a copy (default) and leave ``frame`` untouched; ``False`` draws in place.
        keypoint_color: one BGR colour for every keypoint dot (default: a colour per keypoint type).
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
    for m in range(len(poses)):
        if thickness > 0:
            for (a, b), color in zip(topology.limbs, colors):
                if present[m, a] and present[m, b]:
                    pa, pb = tuple(int(v) for v in fixed[m, a]), tuple(int(v) for v in fixed[m, b])
                    cv2.line(out, pa, pb, color, thickness, cv2.LINE_AA, _SHIFT)
        if radius > 0:
            for n in np.flatnonzero(present[m]):
                center = tuple(int(v) for v in fixed[m, n])
                cv2.circle(out, center, radius * _SCALE, dot_colors[n], -1, cv2.LINE_AA, _SHIFT)
    return out
