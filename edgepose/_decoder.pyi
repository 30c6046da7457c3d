"""Type stubs for edgepose._decoder, the private C++ module (use edgepose.decode)."""

from typing import Any, Dict, List, Tuple

import numpy as np

__version__: str
MAX_MAP_CELLS: int
MAX_LIMB_PEAKS: int
InputError: type  # edgepose.errors.InputError: what every input error of this module raises

class Decoder:
    """The C++ decoder of docs/decoder.md for one topology and configuration."""

    def __init__(
        self, limbs: np.ndarray, starts_person: np.ndarray, num_keypoints: int, config: Dict[str, Any] = ...
    ) -> None: ...
    def decode(
        self, heatmap: np.ndarray, paf: np.ndarray, heatmap_stride: float, paf_stride: float, layout: str = "NHWC"
    ) -> List[Tuple[np.ndarray, np.ndarray]]: ...
    @property
    def num_keypoints(self) -> int: ...
    @property
    def num_limbs(self) -> int: ...

def render_heatmaps(
    keypoints: np.ndarray, height: int, width: int, stride: float, sigma: float = 1.0, nchw: bool = False
) -> np.ndarray: ...
def render_pafs(
    keypoints: np.ndarray,
    limbs: np.ndarray,
    height: int,
    width: int,
    stride: float,
    width_cells: float = 1.0,
    nchw: bool = False,
) -> np.ndarray: ...
def linear_assignment(weights: np.ndarray, min_weight: float) -> np.ndarray:
    """Maximum-weight matching over the pairs with weight >= min_weight (> 0): (P, 2) int64 (row, column)
    pairs in ascending row order. Releases the GIL; ValueError for a non-2-D / non-finite array."""
    ...
def keypoint_similarity(
    pred: np.ndarray, known: np.ndarray, inv_var: np.ndarray, det: np.ndarray, vis: np.ndarray
) -> np.ndarray:
    """(T, M) mean over shared keypoints of exp(-0.5 |pred - det|^2 inv_var); the tracker's OKS."""
    ...
def one_euro_step(
    fx: np.ndarray,
    fdx: np.ndarray,
    ft: np.ndarray,
    fframe: np.ndarray,
    tracks: np.ndarray,
    xy: np.ndarray,
    vis: np.ndarray,
    t: float,
    frame: int,
    min_cutoff: float,
    beta: float,
    d_cutoff: float,
    max_gap: int,
) -> np.ndarray:
    """The tracker's One Euro step, in place on its state; returns the filtered (R, N, 2)."""
    ...
