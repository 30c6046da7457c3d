"""Poses: the result type everything downstream consumes (draw, export, eval, bench, tracking).

The native keypoint order is the model's topology: BodyPoseNet / OpenPose-COCO's 18 keypoints
(``Poses.keypoint_names``: nose, neck, right shoulder, ...; see :mod:`edgepose.topology`).
:meth:`Poses.to_coco17` gives COCO's 17 (the neck dropped), the order ultralytics, supervision and
rtmlib use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .topology import BODYPOSENET, Topology

__all__ = ["Poses"]


@dataclass(frozen=True)
class Poses:
    """The persons found in one image, as parallel arrays.

    Attributes:
        keypoints: (M, N, 3) float32, (x, y, score) per keypoint; a missing keypoint is (0, 0, 0).
        scores: (M,) float32 person scores, best first as the decoder returns them.
        topology: the keypoint layout the arrays follow (BodyPoseNet's 18 keypoints by default).
        ids: (M,) int64 track ids from :class:`edgepose.tracking.PoseTracker`, or None when the
            persons were not tracked; -1 marks a person the tracker gave no id (yet).
    Coordinates are in network-input pixels as decoded, or in frame pixels after ``to_image``.
    Keypoint scores are heatmap values (about 0..1, and they can exceed 1).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    topology: Topology = field(default=BODYPOSENET)
    ids: Optional[np.ndarray] = None

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
        if self.ids is not None:
            ids = np.asarray(self.ids)
            if ids.dtype.kind not in "iu" and ids.size:
                raise ValueError(f"Poses.ids: expected integers, got {ids.dtype}")
            ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
            if ids.shape[0] != kp.shape[0]:
                raise ValueError(f"Poses: {kp.shape[0]} keypoint rows but {ids.shape[0]} ids")
            object.__setattr__(self, "ids", ids)

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
        ids = None if self.ids is None else self.ids[index]
        return Poses(self.keypoints[index], self.scores[index], self.topology, ids)

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

    # -- what apps reach for first: names, scores, boxes, normalised and COCO-17 views ------------
    @property
    def keypoint_names(self) -> Tuple[str, ...]:
        """The N keypoint names in the arrays' order (the topology's; BodyPoseNet: nose, neck, ...)."""
        return self.topology.keypoints

    @property
    def conf(self) -> np.ndarray:
        """(M, N) keypoint scores (0 where missing; heatmap values, which can exceed 1)."""
        return self.keypoints[:, :, 2]

    @property
    def boxes(self) -> np.ndarray:
        """(M, 4) float32 ``x1, y1, x2, y2``: the box around each person's found keypoints (all 0
        for a person without any). Tight around the joints: it does not reach the head's top or
        the outline of the body."""
        out = np.zeros((len(self), 4), np.float32)
        vis = self.visible
        has = vis.any(axis=1)
        if has.any():
            xy = self.xy[has]
            v = vis[has][:, :, None]
            out[has, :2] = np.where(v, xy, np.inf).min(axis=1)
            out[has, 2:] = np.where(v, xy, -np.inf).max(axis=1)
        return out

    def xyn(self, width: float, height: float) -> np.ndarray:
        """(M, N, 2) coordinates divided by the frame's ``width`` and ``height`` (0..1 inside the
        frame); missing keypoints stay 0. Poses do not know their frame's size, so pass it."""
        if not (width > 0 and height > 0):
            raise ValueError(f"xyn: width and height must be > 0, got {width} and {height}")
        out = self.xy / np.array([width, height], np.float32)
        out[~self.visible] = 0.0
        return out

    def to_coco17(self) -> np.ndarray:
        """(M, 17, 3) float32 ``x, y, score`` in COCO's keypoint order
        (:data:`edgepose.topology.COCO17_KEYPOINTS`); BodyPoseNet's neck is dropped. Missing
        keypoints are (0, 0, 0)."""
        m = self.topology.to_coco17
        if m is None:
            raise ValueError(f"topology {self.topology.name!r} has no COCO-17 mapping")
        return self.keypoints[:, list(m)]

    def to_supervision(self) -> Any:
        """A ``supervision.KeyPoints`` in COCO-17 order (as supervision's annotators expect): ``xy``
        (M, 17, 2), the keypoint scores (M, 17), ``class_id`` zeros (person), the person scores, and,
        when tracked, ``data["tracker_id"]`` (M,). supervision >= 0.29 gets them as
        ``keypoint_confidence``, ``detection_confidence`` and ``visible``; older versions as
        ``confidence`` with the person scores in ``data["score"]``. Imports supervision only here.

        Raises:
            BackendUnavailable: supervision is not installed (``pip install supervision``, or the
                ``edgepose[supervision]`` extra).
        """
        try:
            import supervision as sv
        except ImportError as e:
            from .errors import BackendUnavailable

            raise BackendUnavailable(f"Poses.to_supervision needs the supervision package ({e}); "
                                     "install it with `pip install supervision`") from None
        import inspect

        k17 = self.to_coco17()
        conf = np.ascontiguousarray(k17[:, :, 2])
        data: Dict[str, Any] = {}
        if self.ids is not None:
            data["tracker_id"] = self.ids.copy()
        kwargs: Dict[str, Any] = {"xy": np.ascontiguousarray(k17[:, :, :2]), "class_id": np.zeros(len(self), int)}
        if "keypoint_confidence" in inspect.signature(sv.KeyPoints.__init__).parameters:
            kwargs.update(keypoint_confidence=conf, detection_confidence=self.scores.copy(), visible=conf > 0)
        else:
            kwargs["confidence"] = conf
            data["score"] = self.scores.copy()
        return sv.KeyPoints(data=data, **kwargs)

    def with_keypoints(self, keypoints: np.ndarray) -> Poses:
        """The same persons (scores, topology, ids) with other ``keypoints`` (M, N, 3)."""
        ids = None if self.ids is None else self.ids.copy()
        return Poses(keypoints, self.scores.copy(), self.topology, ids)

    def with_ids(self, ids: Optional[np.ndarray]) -> Poses:
        """The same persons with track ``ids`` (M,) int64 (None: untracked)."""
        return Poses(self.keypoints, self.scores, self.topology, ids)

    def translate(self, dx: float, dy: float) -> Poses:
        """A copy with every found keypoint moved by ``(dx, dy)``; missing ones stay (0, 0, 0)."""
        kp = self.keypoints.copy()
        vis = self.visible
        kp[vis, 0] += np.float32(dx)
        kp[vis, 1] += np.float32(dy)
        return self.with_keypoints(kp)

    def to_image(self, transform: Any) -> Poses:
        """Map coordinates with ``transform`` (an object with ``to_image(xy) -> xy``, such as the
        pre-processing ``Transform``); missing keypoints stay (0, 0, 0)."""
        kp = self.keypoints.copy()
        vis = self.visible
        if vis.any():
            kp[vis, :2] = np.asarray(transform.to_image(kp[vis, :2]), dtype=np.float32)
        return self.with_keypoints(kp)

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
        """JSON-serialisable form: topology name and one entry per person (``score``, ``keypoints``;
        tracked persons also ``id`` and ``box``, see docs/output_format.md)."""
        persons = [
            {"score": float(s), "keypoints": [[float(x), float(y), float(c)] for x, y, c in kp]}
            for kp, s in zip(self.keypoints, self.scores)
        ]
        if self.ids is not None:
            for person, i, box in zip(persons, self.ids, self.boxes):
                person["id"] = int(i)
                person["box"] = [float(v) for v in box]
        return {"topology": self.topology.name, "persons": persons}

    def __repr__(self) -> str:
        tracked = "" if self.ids is None else ", tracked"
        return f"Poses(persons={len(self)}, topology={self.topology.name!r}{tracked})"

    def allclose(self, other: Poses, atol: float = 0.0, rtol: float = 0.0) -> bool:
        """True when both hold the same persons in the same order: the same topology, the same ids
        (or both untracked), the same keypoints found, and keypoint coordinates, keypoint scores and
        person scores all within ``atol + rtol * |other|`` (as :func:`numpy.isclose`).
        :meth:`diff` says what differs."""
        return not self.diff(other, atol=atol, rtol=rtol)

    def diff(self, other: Poses, atol: float = 0.0, rtol: float = 0.0) -> str:
        """The first difference from ``other`` under :meth:`allclose`'s rule, as one line (for
        messages: ``assert a.allclose(b), a.diff(b)``); an empty string when there is none."""
        if self.topology != other.topology:
            return f"topology {self.topology.name!r} vs {other.topology.name!r}"
        if len(self) != len(other):
            return f"{len(self)} persons vs {len(other)}"
        if (self.ids is None) != (other.ids is None):
            return f"ids {self.ids} vs {other.ids}"
        if self.ids is not None and not np.array_equal(self.ids, other.ids):
            return f"ids {self.ids.tolist()} vs {other.ids.tolist()}"
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
