"""Scoring tracked poses against the ground truth of :mod:`benchmarks.tracking.sequences`.

Per frame, the predicted persons are matched to the ground truth by OKS (COCO's object keypoint
similarity, COCO's per-keypoint sigmas, ``area`` of the ground truth); a pair counts when
OKS >= 0.5. A prediction whose best partner is an ``ignore`` person (too few keypoints in view) is
dropped, not a false positive. The counted pairs go to py-motmetrics (distance 1 - OKS), which
gives the CLEAR-MOT and identity figures: MOTA, IDF1, ID switches, fragmentations, precision,
recall. On its matches:

- keypoint error: the mean distance in px between a predicted keypoint and its ground truth, over
  the keypoints labelled in the ground truth and found in the prediction;
- jitter: the mean norm, in px, of the second difference over three consecutive frames of the
  keypoint error vector ``e_t = pred_t - gt_t`` of one ground-truth person and keypoint (all three
  frames matched, the keypoint labelled and found in each). The error, not the position, so that
  the person's own motion does not count; whichever prediction is matched, so that the figure
  measures the keypoints and not the ids.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .sequences import gt_arrays

COCO_SIGMAS = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07,
                        0.87, 0.87, 0.89, 0.89]) / 10.0
OKS_THRESHOLD = 0.5
MOT_METRICS = ("idf1", "mota", "num_switches", "num_fragmentations", "precision", "recall",
               "num_false_positives", "num_misses", "num_objects", "num_unique_objects", "mostly_tracked")


def oks(gt: np.ndarray, area: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(G, P) OKS of ground truth ``gt`` (G, 17, 3: x, y, v) with ``area`` (G,) and predictions
    ``pred`` (P, 17, 3: x, y, score; score 0 = not found, contributing 0), as COCOeval computes it."""
    gt = np.asarray(gt, np.float64).reshape(-1, 17, 3)
    pred = np.asarray(pred, np.float64).reshape(-1, 17, 3)
    out = np.zeros((gt.shape[0], pred.shape[0]))
    if not out.size:
        return out
    var = (2 * COCO_SIGMAS) ** 2
    d2 = ((gt[:, None, :, :2] - pred[None, :, :, :2]) ** 2).sum(-1)  # (G, P, 17)
    e = d2 / var / (np.asarray(area, np.float64)[:, None, None] + np.spacing(1)) / 2
    lab = gt[:, None, :, 2] > 0
    found = pred[None, :, :, 2] > 0
    sim = np.where(lab & found, np.exp(-e), 0.0).sum(-1)
    n = lab.sum(-1).astype(np.float64)
    return np.divide(sim, n, out=np.zeros_like(sim), where=n > 0)


def _assign(score: np.ndarray, threshold: float) -> List[Tuple[int, int]]:
    """Pairs (row, col) of the maximum-total assignment over entries >= ``threshold``."""
    from scipy.optimize import linear_sum_assignment

    if not score.size:
        return []
    cost = np.where(score >= threshold, -score, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if score[r, c] >= threshold]


class Hypotheses:
    """The predictions of one frame: ``keypoints`` (P, 17, 3) COCO order, ``ids`` (P,) int.

    A prediction with a negative id is not reported (an untracked fragment).
    """

    def __init__(self, keypoints: np.ndarray, ids: np.ndarray) -> None:
        kp = np.asarray(keypoints, np.float64).reshape(-1, 17, 3)
        ids = np.asarray(ids, np.int64).reshape(-1)
        if ids.shape[0] != kp.shape[0]:
            raise ValueError(f"Hypotheses: {kp.shape[0]} persons but {ids.shape[0]} ids")
        keep = ids >= 0
        self.keypoints, self.ids = kp[keep], ids[keep]
        if len(np.unique(self.ids)) != len(self.ids):
            raise ValueError(f"Hypotheses: an id appears twice in one frame: {self.ids.tolist()}")


def from_poses(poses: Any, ids: Optional[np.ndarray] = None) -> Hypotheses:
    """:class:`Hypotheses` of an edgepose ``Poses`` (any topology with a COCO-17 mapping): the
    ``ids`` given, else ``poses.ids``."""
    m = poses.topology.to_coco17
    if m is None:
        raise ValueError(f"topology {poses.topology.name!r} has no COCO-17 mapping")
    kp = np.asarray(poses.keypoints)[:, list(m)] if len(poses) else np.zeros((0, 17, 3))
    if ids is None:
        ids = getattr(poses, "ids", None)
        if ids is None:
            raise ValueError("from_poses: the Poses carry no ids and none were given")
    return Hypotheses(kp, np.asarray(ids))


def ground_truth_poses(doc: Dict[str, Any]) -> List[Tuple[Any, np.ndarray]]:
    """The ground truth of a sequence as ``(edgepose Poses, ground-truth ids)`` per frame
    (BodyPoseNet's 18 keypoints, score 1 where labelled, the neck between labelled shoulders), every
    person in view with a labelled keypoint, ignored ones included: a perfect detector, for checking
    trackers and this scorer."""
    from edgepose import Poses
    from edgepose.topology import coco17_to_topology

    out = []
    for frame in doc["frames"]:
        ids, kp, _, _ = gt_arrays(frame)
        some = (kp[:, :, 2] > 0).any(axis=1)  # a person in view with no labelled keypoint is no detection
        kp = kp[some]
        kp[:, :, 2] = (kp[:, :, 2] > 0).astype(np.float64)
        out.append((Poses(coco17_to_topology(kp), np.ones(len(kp), np.float32)), ids[some]))
    return out


def score_sequence(gt_doc: Dict[str, Any], hyps: Sequence[Hypotheses], name: Optional[str] = None) -> Dict[str, Any]:
    """The figures of one sequence (see the module docstring); ``hyps`` has one entry per frame."""
    import motmetrics as mm

    frames = gt_doc["frames"]
    if len(hyps) != len(frames):
        raise ValueError(f"{gt_doc.get('name')}: {len(frames)} ground-truth frames but {len(hyps)} predictions")
    acc = mm.MOTAccumulator(auto_id=False)
    per_frame = []  # (gt ids, gt keypoints, hyp ids, hyp keypoints) of the counted persons
    for t, (frame, hyp) in enumerate(zip(frames, hyps)):
        gid, gkp, garea, gign = gt_arrays(frame)
        sim = oks(gkp, garea, hyp.keypoints)
        drop = np.zeros(len(hyp.ids), bool)
        for r, c in _assign(sim, OKS_THRESHOLD):
            drop[c] = gign[r]
        counted = ~gign
        keep = ~drop
        s = sim[counted][:, keep]
        dist = np.where(s >= OKS_THRESHOLD, 1.0 - s, np.nan)
        acc.update(gid[counted].tolist(), hyp.ids[keep].tolist(), dist, frameid=t)
        per_frame.append((gid[counted], gkp[counted], hyp.ids[keep], hyp.keypoints[keep]))
    mh = mm.metrics.create()
    summary = mh.compute(acc, metrics=list(MOT_METRICS), name=name or gt_doc.get("name", "seq"))
    out: Dict[str, Any] = {k: _num(summary[k].iloc[0]) for k in MOT_METRICS}
    out.update(_keypoint_figures(acc, per_frame))
    out["frames"] = len(frames)
    return out


def _num(v: Any) -> Any:
    v = float(v)
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def _keypoint_figures(acc: Any, per_frame: List[Tuple[np.ndarray, ...]]) -> Dict[str, Any]:
    ev = acc.mot_events
    matched = ev[ev["Type"].isin(["MATCH", "SWITCH"])]
    errors: Dict[int, Dict[int, np.ndarray]] = {}  # gt id -> frame -> (17, 2) error, NaN where not both
    dists = []
    for (frame, _), row in matched.iterrows():
        gids, gkp, hids, hkp = per_frame[int(frame)]
        gi = int(np.flatnonzero(gids == row["OId"])[0])
        hi = int(np.flatnonzero(hids == row["HId"])[0])
        ok = (gkp[gi, :, 2] > 0) & (hkp[hi, :, 2] > 0)
        e = np.full((17, 2), np.nan)
        e[ok] = hkp[hi, ok, :2] - gkp[gi, ok, :2]
        errors.setdefault(int(row["OId"]), {})[int(frame)] = e
        dists.append(np.linalg.norm(e[ok], axis=1))
    d = np.concatenate(dists) if dists else np.zeros(0)
    second = []
    for by_frame in errors.values():
        for t, e in by_frame.items():
            if t - 1 in by_frame and t + 1 in by_frame:
                dd = by_frame[t + 1] - 2 * e + by_frame[t - 1]
                ok = ~np.isnan(dd).any(axis=1)
                second.append(np.linalg.norm(dd[ok], axis=1))
    j = np.concatenate(second) if second else np.zeros(0)
    return {
        "kp_error_px": float(d.mean()) if d.size else float("nan"),
        "jitter_px": float(j.mean()) if j.size else float("nan"),
        "matched_keypoints": int(d.size),
        "jitter_samples": int(j.size),
    }


def summarize(per_sequence: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Means over sequences (IDF1, MOTA, switches per sequence, keypoint figures weighted by their
    sample counts), the largest switch count, and the totals of the counts."""
    rows = list(per_sequence.values())
    if not rows:
        return {}

    def mean(k: str) -> float:
        return float(np.mean([r[k] for r in rows]))

    def weighted(k: str, w: str) -> float:
        ws = np.array([r[w] for r in rows], np.float64)
        vs = np.array([r[k] if r[w] else 0.0 for r in rows], np.float64)
        return float((vs * ws).sum() / ws.sum()) if ws.sum() else float("nan")

    return {
        "sequences": len(rows),
        "idf1": mean("idf1"),
        "mota": mean("mota"),
        "switches_per_sequence": mean("num_switches"),
        "switches_max": int(max(r["num_switches"] for r in rows)),
        "switches_total": int(sum(r["num_switches"] for r in rows)),
        "fragmentations_per_sequence": mean("num_fragmentations"),
        "precision": mean("precision"),
        "recall": mean("recall"),
        "kp_error_px": weighted("kp_error_px", "matched_keypoints"),
        "jitter_px": weighted("jitter_px", "jitter_samples"),
    }
