"""Raw network maps -> :class:`Poses`: the Python face of the C++ decoder (``edgepose._decoder``).

    poses = edgepose.decode(heatmap, paf, heatmap_stride=8)            # one image (H, W, C)
    batch = edgepose.decode(heatmaps, pafs, heatmap_stride=8, paf_stride=2, layout="NCHW")

The algorithm is specified in ``docs/decoder.md``. Maps are read in place: float16 and float32
arrays of any strides (NHWC, NCHW, slices, ``np.broadcast_to`` views) are not copied; other
numeric dtypes are converted to float32 first. The GIL is released while a batch decodes.
"""

from __future__ import annotations

from typing import List, Optional, Union

import numpy as np

from . import _decoder
from .config import DecoderConfig
from .errors import InputError
from .results import Poses
from .topology import BODYPOSENET, Topology

__all__ = ["Decoder", "decode", "LAYOUTS"]

LAYOUTS = ("NHWC", "NCHW")


def _as_map(name: str, x: object) -> np.ndarray:
    """``x`` as an array the C++ side reads in place: float16/float32, native byte order, aligned
    and with strides in whole elements. Only arrays that are not already so are copied."""
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise InputError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    if a.dtype not in (np.float16, np.float32) or not a.dtype.isnative:
        a = np.asarray(a, np.float32)
    if not a.flags.aligned or any(s % a.itemsize for s in a.strides):
        # A copy, always: np.ascontiguousarray returns a misaligned C-contiguous array as it is.
        a = np.array(a, order="C", copy=True)
    return a


class Decoder:
    """A reusable decoder for one topology and configuration.

    It keeps the C++ decoder and its scratch buffers between calls, so decoding a stream of
    frames allocates nothing in steady state. One Decoder serves one thread at a time: calls from
    several threads on the same object are serialised by a lock inside the C++ object; for
    parallel decoding give each thread its own Decoder (they share nothing).

    Args:
        topology: the keypoint/limb layout of the maps (BodyPoseNet-18 by default).
        config: the decoder's thresholds and choices (``DecoderConfig()`` by default).
    """

    def __init__(self, topology: Topology = BODYPOSENET, config: Optional[DecoderConfig] = None) -> None:
        self.topology = topology
        self.config = DecoderConfig() if config is None else config
        if not isinstance(self.config, DecoderConfig):
            raise TypeError(f"config: expected a DecoderConfig, got {type(self.config).__name__}")
        self._impl = _decoder.Decoder(
            topology.limb_array(), topology.starts_person_array(), topology.num_keypoints, self.config.to_dict()
        )

    def decode(
        self,
        heatmap: np.ndarray,
        paf: np.ndarray,
        *,
        heatmap_stride: float,
        paf_stride: Optional[float] = None,
        layout: str = "NHWC",
    ) -> Union[Poses, List[Poses]]:
        """Decode the maps of one image or a batch.

        Args:
            heatmap: (H, W, N+1) for one image or (B, H, W, N+1) for a batch; NCHW order
                ((N+1, H, W) / (B, N+1, H, W)) with ``layout="NCHW"``. The last channel is the
                background and is not read.
            paf: (Hp, Wp, 2K) or (B, Hp, Wp, 2K), same layout; its resolution may differ from the
                heatmap's (``paf_stride``).
            heatmap_stride: input pixels per heatmap cell (8 for BodyPoseNet and OpenPose models).
            paf_stride: input pixels per PAF cell; defaults to ``heatmap_stride``.
            layout: ``"NHWC"`` or ``"NCHW"``; for a single image it names the same order without B.

        Returns:
            :class:`Poses` in network-input pixels for a single image, or a list of them (one per
            image) for a batch.

        Raises:
            InputError: (a ValueError; raised in Python or at the C++ boundary) a non-numeric array,
                a map of the wrong rank, channel count or size, with NaN or infinity, a stride out
                of range or strides that do not describe the same image, an unknown layout.
        """
        h = _as_map("heatmap", heatmap)
        p = _as_map("paf", paf)
        single = h.ndim == 3 and p.ndim == 3
        if single:
            h, p = h[np.newaxis], p[np.newaxis]
        elif h.ndim != p.ndim:
            raise InputError(
                f"heatmap and paf must both be one image (3-D) or a batch (4-D), got {h.ndim}-D and {p.ndim}-D"
            )
        hs = float(heatmap_stride)
        ps = hs if paf_stride is None else float(paf_stride)
        raw = self._impl.decode(h, p, hs, ps, layout)
        poses = [Poses(kp, sc, self.topology) for kp, sc in raw]
        return poses[0] if single else poses

    def __repr__(self) -> str:
        return f"Decoder(topology={self.topology.name!r}, config={self.config!r})"


def decode(
    heatmap: np.ndarray,
    paf: np.ndarray,
    *,
    heatmap_stride: float,
    paf_stride: Optional[float] = None,
    layout: str = "NHWC",
    topology: Topology = BODYPOSENET,
    config: Optional[DecoderConfig] = None,
) -> Union[Poses, List[Poses]]:
    """Decode raw heatmaps and PAFs into persons; see :meth:`Decoder.decode` for the arguments.

    A one-off convenience: it builds a :class:`Decoder` per call. For a stream of frames, keep a
    :class:`Decoder`.
    """
    return Decoder(topology, config).decode(heatmap, paf, heatmap_stride=heatmap_stride, paf_stride=paf_stride,
                                            layout=layout)
