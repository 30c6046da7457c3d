"""Ground-truth heatmaps and part affinity fields from keypoints (training targets, tests).

The rules are the "Rendering" section of ``docs/decoder.md``; the work is done in C++
(``edgepose._decoder``, GIL released). ``edgepose._reference`` holds the numpy version.

    heat = render_heatmaps(kps, shape=(46, 69), stride=8)      # (46, 69, 19) float32
    paf = render_pafs(kps, shape=(46, 69), stride=8)           # (46, 69, 38) float32
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from . import _decoder
from .errors import InputError
from .topology import BODYPOSENET, Topology

__all__ = ["render_heatmaps", "render_pafs"]

_LAYOUTS = ("NHWC", "NCHW")


def _prepare(
    keypoints: np.ndarray, shape: Sequence[int], layout: str, topology: Topology
) -> Tuple[np.ndarray, int, int]:
    """Checks what the C++ side cannot know (topology, layout names) and converts."""
    kp = np.asarray(keypoints)
    if kp.dtype.kind not in "fiu":
        raise InputError(f"keypoints: expected a numeric array, got dtype {kp.dtype}")
    n = topology.num_keypoints
    if kp.ndim != 3 or kp.shape[1:] != (n, 3):
        raise InputError(f"keypoints: expected shape (M, {n}, 3) for topology {topology.name!r}, got {kp.shape}")
    if layout not in _LAYOUTS:
        raise InputError(f"layout: expected one of {_LAYOUTS}, got {layout!r}")
    try:
        height, width = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape: expected the map's (H, W), got {shape!r}") from None
    return np.ascontiguousarray(kp, dtype=np.float64), height, width


def render_heatmaps(
    keypoints: np.ndarray,
    *,
    shape: Tuple[int, int],
    stride: float,
    sigma: float = 1.0,
    layout: str = "NHWC",
    topology: Topology = BODYPOSENET,
) -> np.ndarray:
    """Gaussian keypoint heatmaps plus the background channel.

    Args:
        keypoints: (M, N, 3) x, y, v in input pixels; a keypoint is drawn where v > 0.
        shape: the map's (H, W) in cells.
        stride: input pixels per cell.
        sigma: the Gaussian's standard deviation, in cells (cut to 0 below 0.01, ~3 sigma).
        layout: ``"NHWC"`` -> (H, W, N + 1); ``"NCHW"`` -> (N + 1, H, W).
        topology: the keypoint layout (fixes N).
    Returns:
        float32 heatmaps; channel c is the max over persons, the last is ``max(0, 1 - max_c)``.
    Raises:
        InputError (a ValueError) for bad shapes, layouts, sizes or values.
    """
    kp, height, width = _prepare(keypoints, shape, layout, topology)
    return _decoder.render_heatmaps(kp, height, width, float(stride), float(sigma), layout == "NCHW")


def render_pafs(
    keypoints: np.ndarray,
    *,
    shape: Tuple[int, int],
    stride: float,
    width: float = 1.0,
    layout: str = "NHWC",
    topology: Topology = BODYPOSENET,
) -> np.ndarray:
    """Part affinity fields: unit vectors along each limb, averaged where persons overlap.

    Args:
        keypoints: (M, N, 3) x, y, v in input pixels; a limb is drawn where both ends have v > 0.
        shape: the map's (H, W) in cells.
        stride: input pixels per cell.
        width: cells within this distance of a limb's segment (ends included) are covered.
        layout: ``"NHWC"`` -> (H, W, 2K); ``"NCHW"`` -> (2K, H, W).
        topology: limbs and their PAF channels.
    Returns:
        float32 PAFs; limb k's x / y components in ``topology.paf_channels[k]``.
    Raises:
        InputError (a ValueError) for bad shapes, layouts, sizes or values.
    """
    kp, height, width_cells = _prepare(keypoints, shape, layout, topology)
    return _decoder.render_pafs(
        kp, topology.limb_array(), height, width_cells, float(stride), float(width), layout == "NCHW"
    )
