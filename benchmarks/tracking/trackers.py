"""The trackers the benchmark compares: two baselines written here and edgepose's own.

Each is a factory ``make() -> tracker`` (one fresh tracker per sequence) whose tracker has
``update(poses, timestamp) -> (poses, ids)``: the persons it reports (keypoints possibly smoothed)
and their ids (a negative id: reported but not tracked, left out of the scoring).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import numpy as np

Update = Tuple[Any, np.ndarray]


def keypoint_boxes(keypoints: np.ndarray) -> np.ndarray:
    """(M, 4) xyxy boxes around the found keypoints (score > 0) of (M, N, 3); zeros for a person with none."""
    kp = np.asarray(keypoints, np.float64)
    out = np.zeros((kp.shape[0], 4))
    for i, k in enumerate(kp):
        f = k[:, 2] > 0
        if f.any():
            out[i] = [k[f, 0].min(), k[f, 1].min(), k[f, 0].max(), k[f, 1].max()]
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class NoTracking:
    """A fresh id for every detection of every frame: what a per-frame detector gives."""

    def __init__(self) -> None:
        self._next = 0

    def update(self, poses: Any, timestamp: float) -> Update:
        ids = np.arange(self._next, self._next + len(poses), dtype=np.int64)
        self._next += len(poses)
        return poses, ids


class GreedyIoU:
    """The field's plain baseline: detections take over the track whose last box overlaps them most
    (greedy, highest IoU first, IoU >= ``iou``); a track not matched for more than ``max_age`` frames
    ends; an unmatched detection starts a track. No motion model, no appearance, no score gate
    (the IOU tracker of Bochinski et al., AVSS 2017, with a short lost buffer).
    """

    def __init__(self, iou: float = 0.3, max_age: int = 5) -> None:
        self.iou, self.max_age = iou, max_age
        self._boxes = np.zeros((0, 4))
        self._ids = np.zeros(0, np.int64)
        self._age = np.zeros(0, np.int64)
        self._next = 0

    def update(self, poses: Any, timestamp: float) -> Update:
        boxes = keypoint_boxes(poses.keypoints)
        sim = box_iou(self._boxes, boxes)
        ids = np.full(len(boxes), -1, np.int64)
        used_t = np.zeros(len(self._ids), bool)
        if sim.size:
            order = np.argsort(-sim, axis=None, kind="stable")
            for flat in order:
                t, d = divmod(int(flat), sim.shape[1])
                if sim[t, d] < self.iou:
                    break
                if used_t[t] or ids[d] >= 0:
                    continue
                used_t[t] = True
                ids[d] = self._ids[t]
                self._boxes[t] = boxes[d]
        self._age = np.where(used_t, 0, self._age + 1)
        new = ids < 0
        ids[new] = np.arange(self._next, self._next + int(new.sum()))
        self._next += int(new.sum())
        alive = self._age <= self.max_age
        self._boxes = np.concatenate([self._boxes[alive], boxes[new]])
        self._ids = np.concatenate([self._ids[alive], ids[new]])
        self._age = np.concatenate([self._age[alive], np.zeros(int(new.sum()), np.int64)])
        return poses, ids


class EdgePoseTracker:
    """edgepose.tracking.PoseTracker behind the benchmark's interface."""

    def __init__(self, **kwargs: Any) -> None:
        from edgepose.tracking import PoseTracker

        self._tracker = PoseTracker(**kwargs)

    def update(self, poses: Any, timestamp: float) -> Update:
        out = self._tracker.update(poses, timestamp=timestamp)
        ids = getattr(out, "ids", None)
        if ids is None:
            raise ValueError("PoseTracker.update returned Poses without ids")
        return out, np.asarray(ids, np.int64)


def methods() -> Tuple[Dict[str, Callable[[], Any]], Dict[str, str]]:
    """({row name: factory}, {row name: why it is skipped}) for the comparison."""
    rows: Dict[str, Callable[[], Any]] = {"no tracking": NoTracking, "greedy IoU": GreedyIoU}
    skipped: Dict[str, str] = {}
    try:
        import edgepose.tracking  # noqa: F401
    except ImportError as e:
        for name in ("PoseTracker", "PoseTracker + smoothing"):
            skipped[name] = f"edgepose.tracking is not available here ({e})"
    else:
        rows["PoseTracker"] = lambda: EdgePoseTracker(smooth=False)
        rows["PoseTracker + smoothing"] = lambda: EdgePoseTracker(smooth=True)
    return rows, skipped


def run_tracker(tracker: Any, detections: List[Any], fps: float) -> Tuple[List[Tuple[Any, np.ndarray]], np.ndarray]:
    """Feed ``detections`` (one Poses per frame) to ``tracker``; its outputs and the ms of each update."""
    import time

    outs, ms = [], np.zeros(len(detections))
    for t, poses in enumerate(detections):
        t0 = time.perf_counter()
        out = tracker.update(poses, timestamp=t / fps)
        ms[t] = (time.perf_counter() - t0) * 1e3
        outs.append(out)
    return outs, ms

