"""Poses: the result type everything downstream consumes (draw, export, eval, bench, tracking)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Union

import numpy as np

from .topology import BODYPOSENET, Topology

__all__ = ["Poses"]


@dataclass(frozen=True)
class Poses:
    """The persons found in one image, as parallel arrays.

    Attributes:
        keypoints: (M, N, 3) float32, (x, y, score) per keypoint; a missing keypoint is (0, 0, 0).
        scores: (M,) float32 person scores, best first as the decoder returns them.
        topology: the keypoint layout the arrays follow.
    Coordinates are in network-input pixels as decoded, or in frame pixels after ``to_image``.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    topology: Topology = field(default=BODYPOSENET)

    def __post_init__(self) -> None:
        kp = np.ascontiguousarray(self.keypoints, dtype=np.float32)
        sc = np.ascontiguousarray(self.scores, dtype=np.float32).reshape(-1)
        n = self.topology.num_keypoints
        if kp.size == 0 and sc.size == 0:
            kp = kp.reshape(0, n, 3)
        if kp.ndim != 3 or kp.shape[1:] != (n, 3):
            raise ValueError(f"Poses.keypoints: expected shape (M, {n}, 3), got {kp.shape}")
        if sc.shape[0] != kp.shape[0]:
            raise ValueError(f"Poses: {kp.shape[0]} keypoint rows but {sc.shape[0]} scores")
        object.__setattr__(self, "keypoints", kp)
        object.__setattr__(self, "scores", sc)

    @classmethod
    def empty(cls, topology: Topology = BODYPOSENET) -> Poses:
        """No persons."""
        return cls(np.zeros((0, topology.num_keypoints, 3), np.float32), np.zeros((0,), np.float32), topology)

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def __getitem__(self, index: Union[int, slice, np.ndarray, List[int]]) -> Poses:
        """numpy-style selection of persons; an int gives a Poses of one person."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Poses(self.keypoints[index], self.scores[index], self.topology)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def visible(self) -> np.ndarray:
        """(M, N) bool: which keypoints were found."""
        return self.keypoints[:, :, 2] > 0

    @property
    def xy(self) -> np.ndarray:
        """(M, N, 2) coordinates (missing keypoints are 0)."""
        return self.keypoints[:, :, :2]

    def translate(self, dx: float, dy: float) -> Poses:
        """A copy with every found keypoint moved by ``(dx, dy)``; missing ones stay (0, 0, 0)."""
        kp = self.keypoints.copy()
        vis = self.visible
        kp[vis, 0] += np.float32(dx)
        kp[vis, 1] += np.float32(dy)
        return Poses(kp, self.scores.copy(), self.topology)

    def to_image(self, transform: Any) -> Poses:
        """Map coordinates with ``transform`` (an object with ``to_image(xy) -> xy``, such as the
        pre-processing ``Transform``); missing keypoints stay (0, 0, 0)."""
        kp = self.keypoints.copy()
        vis = self.visible
        if vis.any():
            kp[vis, :2] = np.asarray(transform.to_image(kp[vis, :2]), dtype=np.float32)
        return Poses(kp, self.scores.copy(), self.topology)

    def to_coco(self, image_id: int = 0, category_id: int = 1) -> List[Dict[str, Any]]:
        """COCO keypoint result dicts (17 keypoints, v = 1 where found, score = person score)."""
        m = self.topology.to_coco17
        if m is None:
            raise ValueError(f"topology {self.topology.name!r} has no COCO-17 mapping")
        out = []
        for kp, s in zip(self.keypoints, self.scores):
            k17 = kp[list(m)]
            found = k17[:, 2] > 0
            flat = np.zeros((17, 3), np.float64)
            flat[found, 0:2] = k17[found, 0:2]
            flat[found, 2] = 1.0
            out.append({
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": [round(float(v), 2) for v in flat.reshape(-1)],
                "score": float(s),
            })
        return out

    def draw(self, frame: np.ndarray, **kwargs: Any) -> np.ndarray:
        """The skeletons drawn on a copy of ``frame``; see :func:`edgepose.draw.draw` for ``kwargs``."""
        from .draw import draw

        return draw(frame, self, **kwargs)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable form: topology name and one entry per person."""
        return {
            "topology": self.topology.name,
            "persons": [
                {"score": float(s), "keypoints": [[float(x), float(y), float(c)] for x, y, c in kp]}
                for kp, s in zip(self.keypoints, self.scores)
            ],
        }

    def __repr__(self) -> str:
        return f"Poses(persons={len(self)}, topology={self.topology.name!r})"

    def allclose(self, other: Poses, atol: float = 0.0, rtol: float = 0.0) -> bool:
        """True when both hold the same persons in the same order: the same topology, the same
        keypoints found, and keypoint coordinates, keypoint scores and person scores all within
        ``atol + rtol * |other|`` (as :func:`numpy.isclose`). :meth:`diff` says what differs."""
        return not self.diff(other, atol=atol, rtol=rtol)

    def diff(self, other: Poses, atol: float = 0.0, rtol: float = 0.0) -> str:
        """The first difference from ``other`` under :meth:`allclose`'s rule, as one line (for
        messages: ``assert a.allclose(b), a.diff(b)``); an empty string when there is none."""
        if self.topology != other.topology:
            return f"topology {self.topology.name!r} vs {other.topology.name!r}"
        if len(self) != len(other):
            return f"{len(self)} persons vs {len(other)}"
        for m in range(len(self)):
            a, b = self.keypoints[m], other.keypoints[m]
            va, vb = self.visible[m], other.visible[m]
            if not np.array_equal(va, vb):
                return (f"person {m}: keypoints found differ: {np.flatnonzero(va).tolist()} "
                        f"vs {np.flatnonzero(vb).tolist()}")
            bad = ~np.isclose(a, b, atol=atol, rtol=rtol)
            if bad.any():
                k, c = (int(i) for i in np.argwhere(bad)[0])
                what = ("x", "y", "score")[c]
                return f"person {m} keypoint {k} {what}: {a[k, c]!r} vs {b[k, c]!r} ({a[k]} vs {b[k]})"
            if not np.isclose(self.scores[m], other.scores[m], atol=atol, rtol=rtol):
                return f"person {m} score: {self.scores[m]!r} vs {other.scores[m]!r}"
        return ""
