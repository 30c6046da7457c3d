"""Keypoint layouts as data.

A :class:`Topology` names the keypoints, the limbs (pairs of keypoints joined by a part affinity
field) and the PAF channels of each limb. The C++ decoder receives it as plain arrays, so another
bottom-up layout is a new value here, not new code.

Glossary used across edgepose: N keypoints, C = N + 1 heatmap channels (the last is background),
K limbs, 2K PAF channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

__all__ = ["FlipPermutation", "Topology", "BODYPOSENET", "COCO17_KEYPOINTS", "COCO17_SKELETON", "mirror_name"]

_SIDES = {"left": "right", "right": "left", "l": "r", "r": "l"}


def mirror_name(name: str) -> str:
    """The keypoint name a horizontal flip turns ``name`` into: the ``_``-separated word ``left`` <->
    ``right`` and ``l`` <-> ``r`` (``left_eye`` -> ``right_eye``, ``r_knee`` -> ``l_knee``); other
    names (``nose``, ``neck``) are their own mirror."""
    return "_".join(_SIDES.get(w, w) for w in name.split("_"))


@dataclass(frozen=True)
class FlipPermutation:
    """How a horizontal flip permutes a :class:`Topology` (see :meth:`Topology.flip_permutation`).

    Attributes:
        keypoints: N indices; keypoint i of the person is keypoint ``keypoints[i]`` of its mirror image.
        limbs: K indices; limb k is limb ``limbs[k]`` in the mirror image.
        limb_signs: K values +1 / -1: -1 where the mirrored limb runs the other way (its from / to are
            the mirrors of limb k's to / from), so its PAF vector points backwards.
    """

    keypoints: Tuple[int, ...]
    limbs: Tuple[int, ...]
    limb_signs: Tuple[int, ...]

    def heatmap_channels(self, channels: int) -> np.ndarray:
        """Channel indices that undo a flip on a heatmap of ``channels`` (N keypoints, then extra
        channels such as the background, which stay): ``unflipped = flipped[idx]``."""
        n = len(self.keypoints)
        if channels < n:
            raise ValueError(f"a heatmap of {channels} channels has fewer than the {n} keypoints")
        return np.array(list(self.keypoints) + list(range(n, channels)), dtype=np.intp)

    def paf_channels(self, paf_channels: Tuple[Tuple[int, int], ...]) -> Tuple[np.ndarray, np.ndarray]:
        """``(idx, sign)`` over the 2K PAF channels that undo a flip once the map is mirrored back:
        ``unflipped[c] = sign[c] * flipped[idx[c]]``. The x component changes sign (a mirror), and
        both do where the mirrored limb runs the other way."""
        idx = np.empty(2 * len(paf_channels), dtype=np.intp)
        sign = np.empty(2 * len(paf_channels), dtype=np.float32)
        for k, (cx, cy) in enumerate(paf_channels):
            mx, my = paf_channels[self.limbs[k]]
            idx[cx], idx[cy] = mx, my
            sign[cx], sign[cy] = -self.limb_signs[k], self.limb_signs[k]
        return idx, sign


@dataclass(frozen=True)
class Topology:
    """An N-keypoint / K-limb layout.

    Attributes:
        name: a short identifier.
        keypoints: N keypoint names, in heatmap channel order.
        limbs: K pairs ``(from, to)`` of keypoint indices; the PAF of limb k points from -> to.
        paf_channels: K pairs ``(x_channel, y_channel)`` into the PAF tensor.
        starts_person: K flags; a limb whose flag is False never starts a new person during
            assembly (BodyPoseNet's eye -> ear limbs), it only attaches to existing ones.
        to_coco17: for each of COCO's 17 keypoints, the index of the same keypoint here
            (None when the layout cannot be mapped to COCO-17).
        flip_pairs: pairs of keypoints swapped by a horizontal flip (left <-> right).
    """

    name: str
    keypoints: Tuple[str, ...]
    limbs: Tuple[Tuple[int, int], ...]
    paf_channels: Tuple[Tuple[int, int], ...]
    starts_person: Tuple[bool, ...]
    to_coco17: Optional[Tuple[int, ...]] = None
    flip_pairs: Tuple[Tuple[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        n, k = len(self.keypoints), len(self.limbs)
        if n == 0 or k == 0:
            raise ValueError(f"topology {self.name!r}: needs at least one keypoint and one limb")
        if len(self.paf_channels) != k or len(self.starts_person) != k:
            raise ValueError(
                f"topology {self.name!r}: {k} limbs but {len(self.paf_channels)} PAF channel pairs "
                f"and {len(self.starts_person)} starts_person flags"
            )
        for a, b in self.limbs:
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError(f"topology {self.name!r}: limb ({a}, {b}) is not a pair of two of the {n} keypoints")
        chans = [c for pair in self.paf_channels for c in pair]
        if sorted(chans) != list(range(2 * k)):
            raise ValueError(f"topology {self.name!r}: PAF channels must use each of 0..{2 * k - 1} exactly once")
        if self.to_coco17 is not None and (len(self.to_coco17) != 17 or not all(0 <= i < n for i in self.to_coco17)):
            raise ValueError(f"topology {self.name!r}: to_coco17 must hold 17 indices into the {n} keypoints")

    @property
    def num_keypoints(self) -> int:
        """N, the number of keypoints (heatmap channels without the background)."""
        return len(self.keypoints)

    @property
    def num_limbs(self) -> int:
        """K, the number of limbs (PAF channels / 2)."""
        return len(self.limbs)

    @property
    def heatmap_channels(self) -> int:
        """C = N + 1: the heatmap channels including the background."""
        return self.num_keypoints + 1

    @property
    def paf_channel_count(self) -> int:
        """2K: the PAF channels."""
        return 2 * self.num_limbs

    def limb_array(self) -> np.ndarray:
        """(K, 4) int32 rows ``from, to, paf_x, paf_y``, the form the C++ decoder takes."""
        return np.array(
            [(a, b, cx, cy) for (a, b), (cx, cy) in zip(self.limbs, self.paf_channels)], dtype=np.int32
        ).reshape(-1, 4)

    def starts_person_array(self) -> np.ndarray:
        """(K,) uint8 flags, the form the C++ decoder takes."""
        return np.array(self.starts_person, dtype=np.uint8)

    def flip_permutation(self) -> FlipPermutation:
        """The keypoint and limb permutation of a horizontal flip, derived from the keypoint names
        (:func:`mirror_name`: ``left`` <-> ``right``, ``l`` <-> ``r``). It is an involution.

        Raises:
            ValueError: a keypoint whose mirror name is not in the topology, or a limb whose mirror
                (the limb joining the two mirrored keypoints) is not one of its limbs.
        """
        kp = []
        for name in self.keypoints:
            other = mirror_name(name)
            if other not in self.keypoints:
                raise ValueError(f"topology {self.name!r}: keypoint {name!r} has no mirror {other!r}, so a "
                                 "horizontal flip cannot be undone")
            kp.append(self.keypoints.index(other))
        where = {limb: k for k, limb in enumerate(self.limbs)}
        limbs, signs = [], []
        for a, b in self.limbs:
            ma, mb = kp[a], kp[b]
            if (ma, mb) in where:
                limbs.append(where[(ma, mb)])
                signs.append(1)
            elif (mb, ma) in where:
                limbs.append(where[(mb, ma)])
                signs.append(-1)
            else:
                raise ValueError(f"topology {self.name!r}: limb {self.keypoints[a]} -> {self.keypoints[b]} has no "
                                 f"mirror limb {self.keypoints[ma]} -> {self.keypoints[mb]}")
        return FlipPermutation(tuple(kp), tuple(limbs), tuple(signs))

    def index(self, name: str) -> int:
        """The index of keypoint ``name``."""
        try:
            return self.keypoints.index(name)
        except ValueError:
            raise KeyError(f"topology {self.name!r} has no keypoint {name!r}") from None


COCO17_KEYPOINTS: Tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

# COCO's skeleton, 0-based indices into COCO17_KEYPOINTS (the json's is 1-based).
COCO17_SKELETON: Tuple[Tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

_BPN_KEYPOINTS: Tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip

# TAO BodyPoseNet / CMU OpenPose COCO-18 limbs; limb k uses PAF channels 2k (x) and 2k+1 (y).
_BPN_LIMBS: Tuple[Tuple[int, int], ...] = (
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16),
    (1, 5), (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17),
)  # fmt: skip

BODYPOSENET = Topology(
    name="bodyposenet18",
    keypoints=_BPN_KEYPOINTS,
    limbs=_BPN_LIMBS,
    paf_channels=tuple((2 * k, 2 * k + 1) for k in range(len(_BPN_LIMBS))),
    # The last two limbs (eye -> ear) only attach to persons already started (TAO, OpenPose).
    starts_person=tuple(k < len(_BPN_LIMBS) - 2 for k in range(len(_BPN_LIMBS))),
    to_coco17=(0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10),
    flip_pairs=((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17)),
)
"""The 18-keypoint / 19-limb layout of TAO BodyPoseNet and OpenPose-COCO models."""


def coco17_to_topology(coco_kpts: np.ndarray, topology: Topology = BODYPOSENET) -> np.ndarray:
    """Map COCO-17 keypoints ``(M, 17, 3)`` (x, y, v) to ``(M, N, 3)`` of ``topology``.

    A keypoint missing in COCO (v == 0) is (0, 0, 0). For BodyPoseNet the neck, which COCO does
    not label, is the midpoint of the shoulders when both are labelled (v = min of the two).
    """
    if topology.to_coco17 is None:
        raise ValueError(f"topology {topology.name!r} has no COCO-17 mapping")
    coco_kpts = np.asarray(coco_kpts, dtype=np.float32)
    if coco_kpts.ndim != 3 or coco_kpts.shape[1:] != (17, 3):
        raise ValueError(f"coco_kpts: expected shape (M, 17, 3), got {coco_kpts.shape}")
    out = np.zeros((coco_kpts.shape[0], topology.num_keypoints, 3), dtype=np.float32)
    for ci, ti in enumerate(topology.to_coco17):
        out[:, ti] = coco_kpts[:, ci]
    out[out[:, :, 2] <= 0] = 0.0
    if "neck" in topology.keypoints:
        neck = topology.index("neck")
        rs, ls = topology.index("right_shoulder"), topology.index("left_shoulder")
        both = (out[:, rs, 2] > 0) & (out[:, ls, 2] > 0)
        out[both, neck, :2] = 0.5 * (out[both, rs, :2] + out[both, ls, :2])
        out[both, neck, 2] = np.minimum(out[both, rs, 2], out[both, ls, 2])
    return out
