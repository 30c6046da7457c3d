"""Per-frame cost of ``PoseTracker.update`` with 10 people, smoothing off and on.

    python benchmarks/bench_tracking_speed.py                   # JSON to /tmp/edgepose-bench/tracking_speed.json
    python benchmarks/bench_tracking_speed.py --update-results  # also benchmarks/results/tracking_speed.json

The persons are real: the OMZ model's decoded output on the golden coco_mini image (four persons,
no model run needed), repeated to ``--people``, each scaled to 200 px, walking its own straight line
at about one body height per second with 1.5 px keypoint noise and 8% keypoint dropouts, at 30 fps.
Each configuration runs ``--passes`` times over ``--frames`` frames; the figure is the median frame
of the fastest pass (the least disturbed by other processes). The machine, its load and the Python
and numpy versions go into the JSON, because absolute times on a shared machine are noisy; the
ratio of the two rows, measured in one run, is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import DATA, RESULTS  # noqa: E402

GOLDEN = DATA / "golden" / "coco_000000196141_552x368_omz_hpe0001.npz"
MODEL = "omz_human_pose_estimation_0001"


def real_persons() -> Any:
    """The golden image's decoded persons, each centred on (0, 0) and scaled to 200 px height."""
    from edgepose import Poses, decode

    maps = np.load(GOLDEN)
    (poses,) = decode(maps[f"{MODEL}__heatmap"], maps[f"{MODEL}__paf"], heatmap_stride=8, layout="NCHW")
    kp = poses.keypoints.copy()
    boxes = poses.boxes
    for i in range(len(kp)):
        v = poses.visible[i]
        kp[i, v, :2] = (kp[i, v, :2] - (boxes[i, :2] + boxes[i, 2:]) / 2) * 200.0 / (boxes[i, 3] - boxes[i, 1])
    return Poses(kp, poses.scores)


def frames(people: int, count: int, seed: int = 0) -> List[Any]:
    """``count`` frames of ``people`` persons on straight lines across a 1920x1080 frame."""
    from edgepose import Poses

    src = real_persons()
    rng = np.random.default_rng(seed)
    which = np.arange(people) % len(src)
    start = np.stack([rng.uniform(150, 1770, people), rng.uniform(150, 930, people)], axis=1)
    velocity = rng.normal(0.0, 1.0, (people, 2))
    velocity *= 200.0 / 30.0 / np.linalg.norm(velocity, axis=1, keepdims=True)  # 200 px/s
    out = []
    for f in range(count):
        kp = src.keypoints[which].copy()
        vis = kp[:, :, 2] > 0
        pos = start + velocity * f
        kp[:, :, :2] += pos[:, None, :]
        kp[:, :, :2] += rng.normal(0.0, 1.5, kp[:, :, :2].shape)
        kp[~vis] = 0.0
        kp[rng.random(vis.shape) < 0.08] = 0.0
        out.append(Poses(kp.astype(np.float32), src.scores[which]))
    return out


def time_tracker(seq: List[Any], passes: int, **kwargs: Any) -> Dict[str, float]:
    from edgepose.tracking import PoseTracker

    best: Optional[np.ndarray] = None
    ids = 0
    for _ in range(passes):
        tracker = PoseTracker(**kwargs)
        ms = np.zeros(len(seq))
        for f, poses in enumerate(seq):
            t0 = time.perf_counter()
            out = tracker.update(poses, timestamp=f / 30.0)
            ms[f] = (time.perf_counter() - t0) * 1e3
        ids = len(set(out.ids.tolist()) - {-1})
        if best is None or np.median(ms) < np.median(best):
            best = ms
    assert best is not None
    return {"median_ms": round(float(np.median(best)), 4), "p90_ms": round(float(np.percentile(best, 90)), 4),
            "mean_ms": round(float(best.mean()), 4), "tracked_last_frame": ids}


def machine() -> Dict[str, Any]:
    import edgepose

    info: Dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__,
                            "edgepose": edgepose.__version__, "usable_threads": len(os.sched_getaffinity(0)),
                            "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
                            "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name:")),
                           platform.processor())
    except (OSError, subprocess.SubprocessError):
        info["cpu"] = platform.processor()
    return info


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--people", type=int, default=10)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("/tmp/edgepose-bench/tracking_speed.json"))
    p.add_argument("--update-results", action="store_true", help="also write benchmarks/results/tracking_speed.json")
    args = p.parse_args(argv)
    seq = frames(args.people, args.frames)
    report: Dict[str, Any] = {"machine": machine(), "people": args.people, "frames": args.frames,
                              "passes": args.passes, "fps": 30.0}
    report["tracking"] = time_tracker(seq, args.passes, smooth=False)
    report["tracking_and_smoothing"] = time_tracker(seq, args.passes, smooth=True)
    report["smoothing_over_tracking"] = round(report["tracking_and_smoothing"]["median_ms"]
                                              / report["tracking"]["median_ms"], 3)
    report["machine"]["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(report, indent=1) + "\n"
    targets = [args.out] + ([RESULTS / "tracking_speed.json"] if args.update_results else [])
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
