"""Measure a pose network's systematic keypoint offset on coco_mini (ModelSpec.keypoint_offset).

    python benchmarks/keypoint_offset.py [MODEL ...] [--out DIR | --update-results]

A trained network can place its heatmap peaks a fraction of a pixel away from the labelled joints,
the same way for every joint (a property of its training pipeline: flip or crop conventions,
padding). This decodes the cached real maps with the default decoder (offset not applied), pairs
each decoded keypoint with the nearest labelled keypoint of the same type within 6 input pixels,
and reports the median of (label - decoded) in network-input pixels, overall and per body region,
so that a constant offset can be told from noise. Writes keypoint_offset.json to --out (default
$TMPDIR/edgepose-bench); with --update-results, updates the measured models' entries of
benchmarks/results/keypoint_offset.json and keeps the others (tfpose_mobilenet_v2_small's, say).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    ANNOTATIONS,
    REAL_MODELS,
    RESULTS,
    add_output_options,
    cached_maps,
    output_dir,
    write_results,
)
from edgepose import DecoderConfig  # noqa: E402
from edgepose.coco import ground_truth_poses, load_annotations  # noqa: E402
from edgepose.decode import Decoder  # noqa: E402

REGIONS = {"face": (0, 14, 15, 16, 17), "arms": (2, 3, 4, 5, 6, 7), "legs": (8, 9, 10, 11, 12, 13)}
RADIUS = 6.0  # input pixels


def residuals(model: str) -> np.ndarray:
    """(R, 3) rows (keypoint, dx, dy): label minus decoded position, network-input pixels."""
    maps = cached_maps(model)
    spec = maps["spec"]
    annotations = load_annotations(str(ANNOTATIONS))
    decoder = Decoder(spec.topology, DecoderConfig())
    rows: List[tuple] = []
    for iid, heat, paf, tr in zip(maps["ids"], maps["heatmaps"], maps["pafs"], maps["transforms"]):
        poses = decoder.decode(heat, paf, heatmap_stride=spec.heatmap_stride, paf_stride=spec.paf_stride,
                               layout=spec.output_layout)
        gt = ground_truth_poses(annotations, iid, spec.topology).keypoints.copy()
        vis = gt[:, :, 2] > 0
        if not vis.any():
            continue
        gt[vis, :2] = tr.to_input(gt[vis, :2])
        for person in poses.keypoints:
            for n in np.flatnonzero(person[:, 2] > 0):
                labels = gt[vis[:, n], n, :2]
                if n == spec.topology.keypoints.index("neck") or len(labels) == 0:
                    continue  # the neck is synthesised from the shoulders, not labelled
                d = labels - person[n, :2]
                k = int(np.argmin(np.hypot(d[:, 0], d[:, 1])))
                if np.hypot(*d[k]) < RADIUS:
                    rows.append((n, d[k, 0], d[k, 1]))
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def summary(r: np.ndarray) -> Dict[str, object]:
    out: Dict[str, object] = {"keypoints": int(len(r)), "median_dx": float(np.median(r[:, 1])),
                              "median_dy": float(np.median(r[:, 2])),
                              "stderr": float(np.std(r[:, 1:]) / np.sqrt(max(len(r), 1)))}
    for name, idx in REGIONS.items():
        s = r[np.isin(r[:, 0], idx)]
        out[name] = {"keypoints": int(len(s)), "median_dx": float(np.median(s[:, 1])),
                     "median_dy": float(np.median(s[:, 2]))}
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", metavar="MODEL", help=f"models to measure (default: {' '.join(REAL_MODELS)})")
    add_output_options(ap)
    args = ap.parse_args(argv)
    folder = output_dir(args)
    models = args.models or list(REAL_MODELS)
    out = {}
    for model in models:
        out[model] = summary(residuals(model))
        s = out[model]
        regions = ", ".join(f"{k} ({s[k]['median_dx']:+.2f}, {s[k]['median_dy']:+.2f})" for k in REGIONS)
        offset = f"({s['median_dx']:+.2f}, {s['median_dy']:+.2f})"
        print(f"{model}: {s['keypoints']} keypoints, offset {offset} px; {regions}")
    committed = folder / "keypoint_offset.json"
    if folder == RESULTS and committed.is_file():  # the models not measured now keep their entries
        out = {**json.loads(committed.read_text())["models"], **out}
    print("wrote", write_results("keypoint_offset", {"radius_px": RADIUS, "models": out}, folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
