"""Shared helpers for the benchmark and tuning scripts: paths, the cached real maps of coco_mini.

Real maps are the raw outputs of the two real models in ../shared/data for every coco_mini image,
at input height 368 with the aspect ratio kept (the evaluation protocol of peer_decoders.md). They
are computed once with ONNX Runtime through edgepose's own pre-processing and cached under
``build/maps/`` (not committed: the images are non-commercial licences and the maps are 100+ MB).

Where figures go: every script writes to a scratch folder (``--out DIR``, default
``$TMPDIR/edgepose-bench``); only ``--update-results`` writes the committed ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MODELS = DATA / "models"
COCO_MINI = DATA / "coco_mini"
ANNOTATIONS = COCO_MINI / "person_keypoints.json"
CACHE = REPO / "build" / "maps"
RESULTS = Path(__file__).resolve().parent / "results"  # committed figures: written only with --update-results
SCRATCH = Path(tempfile.gettempdir()) / "edgepose-bench"  # $TMPDIR/edgepose-bench

REAL_MODELS = ("tfpose_mobilenet_thin", "omz_human_pose_estimation_0001")


def image_ids() -> List[int]:
    with open(ANNOTATIONS) as f:
        return sorted(im["id"] for im in json.load(f)["images"])


def image_path(image_id: int) -> Path:
    return COCO_MINI / "images" / f"{image_id:012d}.jpg"


def cached_maps(model: str, refresh: bool = False) -> Dict[str, object]:
    """{"ids", "heatmaps", "pafs" (lists of float16 arrays, model layout), "transforms", "spec"}."""
    import pickle

    path = CACHE / f"{model}.pkl"
    if path.exists() and not refresh:
        with open(path, "rb") as f:
            return pickle.load(f)
    import cv2

    from edgepose import EdgePose
    from edgepose.cli._common import Reporter

    ids, heats, pafs, transforms = [], [], [], []
    report = Reporter(f"maps of {model}")  # minutes on a CPU: a line every 10 s, or a bar on a terminal
    with EdgePose(str(MODELS / f"{model}.onnx")) as ep:
        report.start(len(image_ids()))
        for iid in image_ids():
            frame = cv2.imread(str(image_path(iid)))
            heat, paf, tr = ep.run_maps([frame])
            ids.append(iid)
            heats.append(np.asarray(heat[0], np.float32))
            pafs.append(np.asarray(paf[0], np.float32))
            transforms.append(tr[0])
            report.advance()
        report.finish()
        spec = ep.spec
    out = {"ids": ids, "heatmaps": heats, "pafs": pafs, "transforms": transforms, "spec": spec}
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)
    return out


def machine() -> Dict[str, object]:
    """A short description of where a figure was measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "date": time.strftime("%Y-%m-%d")}


def percentiles(ms: List[float]) -> Dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--out DIR`` (default: the scratch folder) and ``--update-results`` (the committed folder)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help=f"folder for the figures (default: {SCRATCH})")
    where.add_argument("--update-results", action="store_true",
                       help=f"write the committed figures in {RESULTS} instead")


def output_dir(args: Optional[argparse.Namespace]) -> Path:
    """The folder the figures go to (created): ``RESULTS`` only with ``--update-results``."""
    if args is not None and getattr(args, "update_results", False):
        folder = RESULTS
    else:
        folder = getattr(args, "out", None) or SCRATCH
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_results(name: str, payload: Dict[str, Any], folder: Path) -> Path:
    """``payload`` with the machine's description as ``folder/name.json``."""
    path = Path(folder) / f"{name}.json"
    payload = {"machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path
