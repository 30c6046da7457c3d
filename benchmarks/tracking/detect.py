"""Per-frame detections of a sequence video with edgepose, cached as npz.

The video is read back from the mp4 (so the detector sees the codec's artefacts, as
``edgepose infer video.mp4`` would) and each frame goes through ``EdgePose.infer`` with the
model's default settings. The cache file holds the concatenated keypoints, scores and per-frame
counts, keyed by the video's digest, the model file's digest and edgepose's version: a changed
video or model is detected again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np


def file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_video(path: Path) -> List[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open the video")
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames


def _key(video: Path, model: Path) -> str:
    import edgepose

    return f"{file_digest(video)}:{file_digest(model)}:{edgepose.__version__}"


def detections(video: Path, model: Path, cache: Path, make_model: Optional[Callable[[], Any]] = None,
               log: Optional[Callable[[str], None]] = None) -> List[Any]:
    """One ``edgepose.Poses`` per frame of ``video`` (frame pixels), from ``cache`` when it is current."""
    from edgepose import Poses

    video, model, cache = Path(video), Path(model), Path(cache)
    key = _key(video, model)
    if cache.exists():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                return _split(z["keypoints"], z["scores"], z["counts"], Poses)
    frames = read_video(video)
    if make_model is None:
        from edgepose import EdgePose

        def make_model() -> Any:
            return EdgePose(str(model))

    out = []
    with make_model() as ep:
        for frame in frames:
            out.append(ep.infer(frame))
    kp = np.concatenate([p.keypoints for p in out]) if out else np.zeros((0, 18, 3), np.float32)
    sc = np.concatenate([p.scores for p in out]) if out else np.zeros(0, np.float32)
    counts = np.array([len(p) for p in out], np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez_compressed(tmp, key=np.array(key), keypoints=kp, scores=sc, counts=counts)
    tmp.replace(cache)
    if log is not None:
        log(f"detected {len(frames)} frames of {video.name} -> {cache}")
    return out


def _split(kp: np.ndarray, sc: np.ndarray, counts: np.ndarray, poses_type: Any) -> List[Any]:
    edges = np.concatenate([[0], np.cumsum(counts)])
    return [poses_type(kp[a:b], sc[a:b]) for a, b in zip(edges[:-1], edges[1:])]
