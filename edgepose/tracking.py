"""Multi-person pose tracking: stable ids across frames, and optional keypoint smoothing.

    from edgepose.tracking import PoseTracker
    tracker = PoseTracker(smooth=True)
    for frame, t in video:
        poses = tracker.update(model.infer(frame), timestamp=t)   # poses.ids: (M,) int64, -1 = no id
        ...

The algorithm (docs/tracking.md has it step by step, with every parameter):

- **Motion model.** Each track keeps the last position of every keypoint and one constant velocity
  for the whole person (px/s, from the mean displacement of the keypoints seen in two matched
  frames, blended into the previous estimate), and predicts all its keypoints to the new frame's
  time. SORT (Bewley et al., "Simple Online and Realtime Tracking", ICIP 2016) does the same with
  a Kalman filter on boxes.
- **Similarity.** Object keypoint similarity (OKS, the COCO metric) between a track's predicted
  keypoints and a detection's, over the keypoints both have, with COCO's per-keypoint sigmas (the
  neck, which COCO lacks, takes the shoulders'); the scale is the track's keypoint box, and the
  prediction's uncertainty, growing with the time since the track was last matched, widens it.
  Blended with the IoU of the two keypoint boxes (``iou_weight``).
- **Two-stage association** as in ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by
  Associating Every Detection Box", ECCV 2022): whole persons (score >= ``high_score`` with at
  least ``min_parts`` keypoints) are matched first to every confirmed track, lost ones included;
  then the remaining low-score persons and fragments to the confirmed tracks still unmatched that
  were seen in the previous frame; then whole persons left over to tentative tracks. Each stage
  is an optimal assignment (maximum total similarity above a threshold) solved by the decoder's
  C++ matcher (:func:`edgepose._decoder.linear_assignment`), not a greedy one.
- **Track life.** A whole person left unmatched (score >= ``new_track_score``, ``new_track_parts``
  keypoints, not lying inside a person just matched) starts a tentative track; it gets an id after
  ``min_hits`` consecutive matches (in the first frame at once) and is dropped if it misses one
  before that, so fragments neither spawn tracks nor steal them. A confirmed track survives
  ``max_lost`` frames without a match (the lost-track buffer), coasting on its velocity. Ids count
  up from 1 and are never reused, not even after :meth:`PoseTracker.reset`.
- **Smoothing** (``smooth=True``): a One Euro filter (Casiez, Roussel and Vogel, "1 Euro Filter",
  CHI 2012) per track and keypoint, on the frames' timestamps (:class:`OneEuroFilter` is the step;
  the tracker runs the same step in C++ on its state, as it computes the OKS matrix there). A
  missing keypoint does not update its filter; one that reappears after more than
  ``smooth_max_gap`` frames restarts from its measurement. Only persons with an id are smoothed.

Deterministic: the same inputs give the same ids. Bad input is an :class:`~edgepose.errors.InputError`
that leaves the tracker as it was (a timestamp that does not increase, a non-finite one, keypoints
of another topology); empty frames are fine, persons without keypoints get id -1 and are ignored.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np

from ._decoder import keypoint_similarity, linear_assignment, one_euro_step
from .errors import InputError
from .results import Poses
from .topology import COCO17_KEYPOINTS, Topology

__all__ = ["PoseTracker", "OneEuroFilter", "keypoint_sigmas"]

# COCO's per-keypoint OKS sigmas (cocoeval), in COCO17_KEYPOINTS order.
_COCO_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                0.107, 0.107, 0.087, 0.087, 0.089, 0.089)
_DEFAULT_SIGMA = 0.079  # a keypoint COCO does not know, other than the neck: as a shoulder
_MIN_AREA = 16.0 * 16.0  # px^2: the smallest OKS scale, so that a tiny track does not demand sub-pixel agreement
_NEVER = np.int32(1 << 20)  # a keypoint age that means "never seen"


def keypoint_sigmas(topology: Topology) -> np.ndarray:
    """(N,) OKS sigmas for ``topology``'s keypoints, by name: COCO's; the neck takes the mean of the
    two shoulders'; any other unknown name a shoulder's."""
    coco = dict(zip(COCO17_KEYPOINTS, _COCO_SIGMAS))
    shoulders = [coco["left_shoulder"], coco["right_shoulder"]]
    out = []
    for name in topology.keypoints:
        if name in coco:
            out.append(coco[name])
        elif name == "neck":
            out.append(sum(shoulders) / 2)
        else:
            out.append(_DEFAULT_SIGMA)
    return np.array(out, np.float64)


def _boxes(xy: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(K, 4) x1, y1, x2, y2 of the present points of (K, N, 2); 0 where none is present."""
    big = np.where(present[:, :, None], xy, np.inf).min(axis=1)
    small = np.where(present[:, :, None], xy, -np.inf).max(axis=1)
    out = np.concatenate([big, small], axis=1)
    out[~present.any(axis=1)] = 0.0
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of boxes a (A, 4) and b (B, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, 0.0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    sa, sb = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    area_a, area_b = sa[:, 0] * sa[:, 1], sb[:, 0] * sb[:, 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) the fraction of box a's area (A, 4) that lies inside box b (B, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    return np.where(area_a[:, None] > 0, inter / np.maximum(area_a[:, None], 1e-12), 0.0)


class OneEuroFilter:
    """A vectorised One Euro filter (Casiez et al., CHI 2012) over arrays of 2-D points.

    Each point ``(x, y)`` is filtered with the cutoff ``min_cutoff + beta * |velocity|``, the velocity
    (px/s) itself low-passed at ``d_cutoff``; cutoffs in Hz, so the filter follows the timestamps,
    not the frame count. :class:`PoseTracker` keeps one state per track and keypoint; this class
    holds the step, shared with anyone filtering points of their own.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.08, d_cutoff: float = 1.0) -> None:
        for name, value in (("min_cutoff", min_cutoff), ("beta", beta), ("d_cutoff", d_cutoff)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be a finite number >= 0, got {value}")
        if min_cutoff <= 0 or d_cutoff <= 0:
            raise ValueError(f"min_cutoff and d_cutoff must be > 0, got {min_cutoff} and {d_cutoff}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)

    @staticmethod
    def _alpha(cutoff: np.ndarray, dt: np.ndarray) -> np.ndarray:
        # The smoothing factor of a first-order low-pass of this cutoff over dt: 1 / (1 + tau / dt),
        # tau = 1 / (2 pi cutoff).
        return dt / (dt + 1.0 / (2.0 * np.pi * cutoff))

    def step(self, x: np.ndarray, x_prev: np.ndarray, dx_prev: np.ndarray, dt: np.ndarray
             ) -> Tuple[np.ndarray, np.ndarray]:
        """One filter step for points ``x`` (..., 2) from the previous filtered points and velocities
        (..., 2) after ``dt`` seconds (...,) > 0. Returns the filtered points and velocities."""
        dt = dt[..., None]
        dx = (x - x_prev) / dt
        dx_hat = dx_prev + self._alpha(self.d_cutoff, dt) * (dx - dx_prev)
        speed = np.sqrt(np.einsum("...k,...k->...", dx_hat, dx_hat))[..., None]
        a = self._alpha(self.min_cutoff + self.beta * speed, dt)
        return x_prev + a * (x - x_prev), dx_hat


class PoseTracker:
    """Stable ids for the persons of consecutive frames (see the module text for the algorithm).

    Args:
        smooth: filter the keypoints of tracked persons with a One Euro filter (off by default).
        fps: the frame rate assumed when :meth:`update` gets no timestamp (frame k is at k / fps s).
        high_score: a person with at least this score and ``min_parts`` keypoints is "whole" and
            takes part in the first association; others are low-score persons or fragments.
        low_score: persons below this score are ignored.
        min_parts: the keypoints a whole person needs.
        match_threshold: the least similarity (0..1) of a match in the first and third stages.
        low_match_threshold: the least similarity of a low-score person's match (second stage).
        new_track_score: the least score of a person that starts a track.
        new_track_parts: the least keypoints of a person that starts a track.
        max_lost: frames a confirmed track is kept without a match (the lost-track buffer).
        min_hits: consecutive matches that confirm a tentative track (it then gets an id).
        iou_weight: weight of keypoint-box IoU in the similarity (the rest is OKS).
        velocity_gain: how fast the velocity estimate follows a new measurement (0..1].
        keypoint_memory: frames a keypoint not seen is still predicted and compared.
        motion_noise: the uncertainty of a prediction, in person sizes (square root of the
            keypoint box area) per second since the track's last match; added to the OKS variance.
        min_cutoff, beta, d_cutoff: the One Euro filter's parameters (Hz, s/px, Hz).
        smooth_max_gap: frames a keypoint may be missing before its filter restarts.

    Not thread-safe: one tracker per video stream.
    """

    def __init__(self, smooth: bool = False, *, fps: float = 30.0, high_score: float = 0.4, low_score: float = 0.05,
                 min_parts: int = 5, match_threshold: float = 0.2, low_match_threshold: float = 0.3,
                 new_track_score: float = 0.5, new_track_parts: int = 6, max_lost: int = 30, min_hits: int = 2,
                 iou_weight: float = 0.3, velocity_gain: float = 0.5, keypoint_memory: int = 10,
                 motion_noise: float = 1.5, max_motion: float = 0.5, min_cutoff: float = 1.0, beta: float = 0.08,
                 d_cutoff: float = 1.0, smooth_max_gap: int = 2) -> None:
        def number(name: str, value: float, lo: float, hi: float = math.inf, lo_open: bool = False) -> float:
            v = float(value)
            if not (math.isfinite(v) and lo <= v <= hi) or (lo_open and v == lo):
                raise ValueError(f"PoseTracker: {name} must be a number in {'(' if lo_open else '['}{lo}, {hi}], "
                                 f"got {value!r}")
            return v

        def count(name: str, value: int, lo: int) -> int:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
                raise ValueError(f"PoseTracker: {name} must be an integer >= {lo}, got {value!r}")
            return int(value)

        self.smooth = bool(smooth)
        self.fps = number("fps", fps, 0.0, 1e6, lo_open=True)
        self.high_score = number("high_score", high_score, 0.0)
        self.low_score = number("low_score", low_score, 0.0)
        self.min_parts = count("min_parts", min_parts, 1)
        self.match_threshold = number("match_threshold", match_threshold, 0.0, 1.0, lo_open=True)
        self.low_match_threshold = number("low_match_threshold", low_match_threshold, 0.0, 1.0, lo_open=True)
        self.new_track_score = number("new_track_score", new_track_score, 0.0)
        self.new_track_parts = count("new_track_parts", new_track_parts, 1)
        self.max_lost = count("max_lost", max_lost, 0)
        self.min_hits = count("min_hits", min_hits, 1)
        self.iou_weight = number("iou_weight", iou_weight, 0.0, 1.0)
        self.velocity_gain = number("velocity_gain", velocity_gain, 0.0, 1.0, lo_open=True)
        self.keypoint_memory = count("keypoint_memory", keypoint_memory, 0)
        self.motion_noise = number("motion_noise", motion_noise, 0.0, 100.0)
        self.max_motion = number("max_motion", max_motion, 0.0, 100.0)
        self.smooth_max_gap = count("smooth_max_gap", smooth_max_gap, 0)
        self.filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self._next_id = 1
        self._topology: Optional[Topology] = None
        self.reset()

    # -- state -------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every track and the time; the next :meth:`update` is a first frame. Ids keep
        counting up (an id never names two persons of one tracker)."""
        self._frame = 0
        self._time: Optional[float] = None
        self._init_arrays(0 if self._topology is None else self._topology.num_keypoints)

    def _init_arrays(self, n: int) -> None:
        self._id = np.zeros(0, np.int64)  # -1: tentative
        self._kp = np.zeros((0, n, 2))  # keypoints at the time of the last match (missing ones carried)
        self._age = np.zeros((0, n), np.int32)  # frames since each keypoint was last seen
        self._vel = np.zeros((0, 2))  # px/s
        self._t = np.zeros(0)  # time of the last match
        self._hits = np.zeros(0, np.int32)
        self._lost = np.zeros(0, np.int32)  # frames since the last match
        self._fx = np.zeros((0, n, 2))  # One Euro: filtered keypoints
        self._fdx = np.zeros((0, n, 2))  # One Euro: filtered velocities
        self._ft = np.zeros((0, n))  # One Euro: time of each keypoint's last update
        self._fframe = np.full((0, n), -_NEVER, np.int64)  # One Euro: frame of each keypoint's last update

    _ARRAYS = ("_id", "_kp", "_age", "_vel", "_t", "_hits", "_lost", "_fx", "_fdx", "_ft", "_fframe")

    def _keep(self, mask: np.ndarray) -> None:
        for name in self._ARRAYS:
            setattr(self, name, getattr(self, name)[mask])

    @property
    def frame_count(self) -> int:
        """Frames seen since the start or the last :meth:`reset`."""
        return self._frame

    @property
    def track_ids(self) -> np.ndarray:
        """The ids of the confirmed tracks alive now (matched or in the lost-track buffer)."""
        return self._id[self._id >= 0].copy()

    # -- the frame -------------------------------------------------------------------------------------
    def _timestamp(self, timestamp: Optional[float]) -> float:
        if timestamp is None:
            return 0.0 if self._time is None else self._time + 1.0 / self.fps
        try:
            t = float(timestamp)
        except (TypeError, ValueError):
            raise InputError(f"timestamp: expected seconds as a number or None, got {timestamp!r}") from None
        if not math.isfinite(t):
            raise InputError(f"timestamp: must be finite, got {timestamp!r}")
        if self._time is not None and not t > self._time:
            raise InputError(f"timestamp: {t!r} s does not come after the previous frame's {self._time!r} s; frames "
                             "must arrive in time order with increasing timestamps (the frame was not used)")
        return t

    def update(self, poses: Poses, timestamp: Optional[float] = None) -> Poses:
        """Track the persons of the next frame.

        Args:
            poses: the frame's persons, in frame pixels (``EdgePose.infer``'s output).
            timestamp: the frame's time in seconds, increasing from frame to frame (a video's frame
                time); None: the previous one plus ``1 / fps`` (0 for the first frame).
        Returns:
            The same persons, with ``ids`` (M,) int64: a track id (>= 1), or -1 for a person without
            one (a fragment, a person not yet confirmed, one without keypoints). With ``smooth``, the
            keypoints of persons with an id are the filtered ones (missing ones stay (0, 0, 0)).
        Raises:
            InputError: ``poses`` is not a Poses, has another topology than the previous frames, or
                ``timestamp`` is not finite or does not increase. The tracker is left unchanged.
        """
        if not isinstance(poses, Poses):
            raise InputError(f"poses: expected edgepose.Poses, got {type(poses).__name__}")
        if self._topology is None:
            self._topology = poses.topology
            self._sigma_var = (2.0 * keypoint_sigmas(poses.topology)) ** 2
            self._init_arrays(poses.topology.num_keypoints)
        elif poses.topology != self._topology:
            raise InputError(f"poses: topology {poses.topology.name!r} differs from the tracked frames' "
                             f"{self._topology.name!r}")
        t = self._timestamp(timestamp)
        self._time = t
        self._frame += 1
        det_track = self._associate(poses, t)
        ids = np.full(len(poses), -1, np.int64)
        matched = (det_track >= 0).nonzero()[0]
        ids[matched] = self._id[det_track[matched]]
        keypoints = poses.keypoints
        if self.smooth:
            tracked = matched[ids[matched] >= 0]
            if len(tracked):
                keypoints = self._smooth(keypoints, tracked, det_track[tracked], t)
        return Poses(keypoints, poses.scores, poses.topology, ids)

    def _associate(self, poses: Poses, t: float) -> np.ndarray:
        """Match, update, drop and start tracks; returns (M,) the track index of each person, or -1."""
        m = len(poses)
        det_xy = poses.keypoints[:, :, :2].astype(np.float64)
        vis = (poses.keypoints[:, :, 2] > 0) & np.isfinite(det_xy.sum(axis=2))
        self._vis = vis  # for _smooth
        det_xy[~vis] = 0.0  # a non-finite coordinate of a missing keypoint must not reach the sums
        parts = vis.sum(axis=1)
        score = np.where(np.isfinite(poses.scores), poses.scores, 0.0)
        whole = (parts >= self.min_parts) & (score >= self.high_score)
        low = ~whole & (parts > 0) & (score >= self.low_score)
        det_track = np.full(m, -1, np.int64)  # the track index each person is matched to

        n_tracks = len(self._id)
        if n_tracks and (whole.any() or low.any()):
            sim = self._similarity(det_xy, vis, t)
            confirmed = self._id >= 0
            stages = (
                (confirmed, whole, self.match_threshold),
                (confirmed & (self._lost == 0), low, self.low_match_threshold),
                (~confirmed, whole, self.match_threshold),
            )
            track_free = np.ones(n_tracks, bool)
            for track_ok, det_ok, threshold in stages:
                rows = (track_ok & track_free).nonzero()[0]
                cols = (det_ok & (det_track < 0)).nonzero()[0]
                if not len(rows) or not len(cols):
                    continue
                pairs = linear_assignment(sim[rows][:, cols], threshold)
                if len(pairs):
                    tr, dj = rows[pairs[:, 0]], cols[pairs[:, 1]]
                    det_track[dj] = tr
                    track_free[tr] = False
            matched_d = (det_track >= 0).nonzero()[0]
            self._update_matched(det_track[matched_d], det_xy[matched_d], vis[matched_d], t)
            unmatched = track_free
        else:
            unmatched = np.ones(n_tracks, bool)

        # Unmatched tracks: tentative ones end, confirmed ones age in the buffer.
        self._lost[unmatched] += 1
        drop = unmatched & ((self._id < 0) | (self._lost > self.max_lost))
        if drop.any():
            keep_idx = (~drop).nonzero()[0]
            remap = np.full(n_tracks, -1, np.int64)
            remap[keep_idx] = np.arange(len(keep_idx))
            self._keep(~drop)
            det_track = np.where(det_track >= 0, remap[np.maximum(det_track, 0)], -1)

        self._start_tracks(det_xy, vis, parts, score, det_track, t)
        return det_track

    def _similarity(self, det_xy: np.ndarray, vis: np.ndarray, t: float) -> np.ndarray:
        """(T, M) blended OKS / IoU of every track's prediction with every person."""
        since = t - self._t
        pred = self._kp + self._vel[:, None, :] * since[:, None, None]  # constant velocity
        known = self._age <= self.keypoint_memory
        box_t = _boxes(pred, known)
        size = box_t[:, 2:] - box_t[:, :2]
        area = np.maximum(size[:, 0] * size[:, 1], _MIN_AREA)
        # Per-keypoint variance: COCO's (area * k^2, k = 2 sigma), plus the prediction's own
        # uncertainty, growing with the time since the last match, in person sizes per second
        # (three times more while the velocity is unknown).
        motion = np.minimum(self.motion_noise * np.where(self._hits > 1, 1.0, 3.0) * since, self.max_motion)
        var = area[:, None] * (self._sigma_var[None, :] + (motion * motion)[:, None])
        # OKS: the mean over the keypoints both have of exp(-d^2 / (2 var)) (C++, one pass).
        oks = keypoint_similarity(pred, known, 1.0 / var, det_xy, vis)
        if self.iou_weight > 0:
            return (1.0 - self.iou_weight) * oks + self.iou_weight * _iou(box_t, _boxes(det_xy, vis))
        return oks

    def _update_matched(self, tr: np.ndarray, xy: np.ndarray, vis: np.ndarray, t: float) -> None:
        if not len(tr):
            return
        dt = (t - self._t[tr])[:, None]
        old = self._kp[tr]
        # Velocity from the keypoints seen both now and at the last match.
        both = vis & (self._age[tr] == 0)
        n = both.sum(axis=1)
        disp = np.where(both[:, :, None], xy - old, 0.0).sum(axis=1) / np.maximum(n, 1)[:, None]
        measured = disp / dt
        first = self._hits[tr] == 1
        gain = np.where(first, 1.0, self.velocity_gain)[:, None]
        vel = self._vel[tr]
        vel = np.where((n > 0)[:, None], vel + gain * (measured - vel), vel)
        pred = old + self._vel[tr][:, None, :] * dt[:, :, None]
        self._kp[tr] = np.where(vis[:, :, None], xy, pred)
        self._age[tr] = np.where(vis, 0, np.minimum(self._age[tr] + 1, _NEVER))
        self._vel[tr] = vel
        self._t[tr] = t
        self._hits[tr] += 1
        self._lost[tr] = 0
        promote = tr[(self._id[tr] < 0) & (self._hits[tr] >= self.min_hits)]
        for i in promote:  # in track order: deterministic
            self._id[i] = self._new_id()

    def _new_id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def _start_tracks(self, det_xy: np.ndarray, vis: np.ndarray, parts: np.ndarray, score: np.ndarray,
                      det_track: np.ndarray, t: float) -> None:
        cand = np.flatnonzero((det_track < 0) & (parts >= max(self.new_track_parts, self.min_parts))
                              & (score >= max(self.new_track_score, self.high_score)))
        if not len(cand):
            return
        matched = (det_track >= 0).nonzero()[0]
        if len(matched):
            # A person lying mostly inside one just matched is a fragment of it (or hidden behind it).
            inside = _inside(_boxes(det_xy[cand], vis[cand]), _boxes(det_xy[matched], vis[matched]))
            cand = cand[~(inside > 0.7).any(axis=1)]
        if not len(cand):
            return
        k, n = len(cand), vis.shape[1]
        first_frame = self._frame == 1 or self.min_hits <= 1
        new_ids = np.array([self._new_id() for _ in range(k)] if first_frame else [-1] * k, np.int64)
        self._id = np.concatenate([self._id, new_ids])
        self._kp = np.concatenate([self._kp, det_xy[cand]])
        self._age = np.concatenate([self._age, np.where(vis[cand], 0, _NEVER).astype(np.int32)])
        self._vel = np.concatenate([self._vel, np.zeros((k, 2))])
        self._t = np.concatenate([self._t, np.full(k, t)])
        self._hits = np.concatenate([self._hits, np.ones(k, np.int32)])
        self._lost = np.concatenate([self._lost, np.zeros(k, np.int32)])
        self._fx = np.concatenate([self._fx, np.zeros((k, n, 2))])
        self._fdx = np.concatenate([self._fdx, np.zeros((k, n, 2))])
        self._ft = np.concatenate([self._ft, np.zeros((k, n))])
        self._fframe = np.concatenate([self._fframe, np.full((k, n), -_NEVER, np.int64)])
        det_track[cand] = np.arange(len(self._id) - k, len(self._id))

    # -- smoothing ---------------------------------------------------------------------------------------
    def _smooth(self, keypoints: np.ndarray, rows: np.ndarray, tr: np.ndarray, t: float) -> np.ndarray:
        """A copy of ``keypoints`` with those of persons ``rows`` (matched to tracks ``tr``) filtered:
        :meth:`OneEuroFilter.step` per visible keypoint, in C++ on the tracker's state (a keypoint
        missing for more than ``smooth_max_gap`` frames, or new, restarts at its measurement)."""
        kp = keypoints.copy()
        f = self.filter
        xy = one_euro_step(self._fx, self._fdx, self._ft, self._fframe, tr, kp[rows, :, :2], self._vis[rows], t,
                           self._frame, f.min_cutoff, f.beta, f.d_cutoff, self.smooth_max_gap)
        kp[rows, :, :2] = xy
        return kp

    def __repr__(self) -> str:
        return (f"<PoseTracker {len(self.track_ids)} tracks, frame {self._frame}"
                f"{', smoothing' if self.smooth else ''}>")

    def params(self) -> Dict[str, float]:
        """The tracker's parameters, as passed (for reports and benchmarks)."""
        names = ("smooth", "fps", "high_score", "low_score", "min_parts", "match_threshold", "low_match_threshold",
                 "new_track_score", "new_track_parts", "max_lost", "min_hits", "iou_weight", "velocity_gain",
                 "keypoint_memory", "motion_noise", "max_motion", "smooth_max_gap")
        out = {k: getattr(self, k) for k in names}
        out.update(min_cutoff=self.filter.min_cutoff, beta=self.filter.beta, d_cutoff=self.filter.d_cutoff)
        return out
