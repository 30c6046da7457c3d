"""ONNX Runtime vs OpenVINO (bf16 and f32), end to end through edgepose, in one run.

    python benchmarks/bench_backends.py                      # -> a scratch folder (printed)
    python benchmarks/bench_backends.py --update-results     # -> benchmarks/results/backends.json / .md

Each setting is one EdgePose (same model, same pre-processing and decoder, same threads). Speed: the
same coco_mini images, read into memory first, timed with ``infer`` frame by frame in interleaved
rounds (the order rotates each round) so that a machine shared with other jobs loads every setting
alike; FPS and the median per-frame time, and the ratios to ONNX Runtime, which are what to read on a
noisy machine. Accuracy: COCO keypoint AP of each setting over coco_mini through the ``edgepose eval``
path (``infer`` + ``coco.evaluate``). The machine (CPU model, bf16 flags, threads, load average) is
recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
from common import ANNOTATIONS, COCO_MINI, MODELS, RESULTS, machine

from edgepose import EdgePose, coco
from edgepose.backends import cpu_has_bf16

SETTINGS = {
    "onnxruntime": ("onnxruntime", {}),
    "openvino": ("openvino", {}),  # its default: bf16 on a CPU with bf16 instructions, else f32
    "openvino-f32": ("openvino", {"precision": "f32"}),
}


def _lscpu_model() -> str:
    return str(machine()["cpu"])


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="omz_human_pose_estimation_0001", help="a model name in ../shared/data/models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=20, help="coco_mini images timed per round (default 20)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    ap.add_argument("--ap-limit", type=int, default=None, help="score AP on the first N images only (default all)")
    ap.add_argument("--no-ap", action="store_true", help="timing only")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {list(SETTINGS)}")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "edgepose-bench-backends")
    ap.add_argument("--update-results", action="store_true", help="write benchmarks/results/backends.json/md")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"--settings: unknown {unknown}; choose from {list(SETTINGS)}")
    annotations = json.loads(ANNOTATIONS.read_text())
    ims = annotations["images"]
    frames = {im["id"]: cv2.imread(str(COCO_MINI / "images" / im["file_name"])) for im in ims}
    timed = [frames[im["id"]] for im in ims[: args.images]]
    path = str(MODELS / f"{args.model}.onnx")
    load_before = os.getloadavg()
    models = {n: EdgePose(path, backend=SETTINGS[n][0], threads=args.threads,
                          backend_options=SETTINGS[n][1] or None) for n in names}
    try:
        for m in models.values():  # warm-up: first-run allocations, each input size once
            for f in timed[:3]:
                m.infer(f)
        per_frame: Dict[str, List[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for n in order:
                for f in timed:
                    t0 = time.perf_counter()
                    models[n].infer(f)
                    per_frame[n].append((time.perf_counter() - t0) * 1e3)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {np.median(per_frame[n]):.1f} ms" for n in names), flush=True)
        aps: Dict[str, Any] = {}
        if not args.no_ap:
            scored = ims[: args.ap_limit]
            for n in names:
                results: List[Dict[str, Any]] = []
                for im in scored:
                    results += coco.poses_to_results(models[n].infer(frames[im["id"]]), im["id"])
                aps[n] = coco.evaluate(results, annotations, image_ids=[im["id"] for im in scored])["AP"]
                print(f"AP {n}: {aps[n]:.4f}", flush=True)
        described = {n: m.backend.describe() for n, m in models.items()}
    finally:
        for m in models.values():
            m.close()
    load_after = os.getloadavg()
    rows = {}
    base = names[0]
    for n in names:
        ms = np.array(per_frame[n])
        rows[n] = {"backend": described[n]["backend"], "version": described[n]["version"],
                   "precision": described[n].get("precision", "fp32"), "median_ms": float(np.median(ms)),
                   "fps": float(len(ms) / (ms.sum() / 1e3)), "ap": aps.get(n)}
    for n in names:
        rows[n]["fps_vs_" + base] = rows[n]["fps"] / rows[base]["fps"]
        if aps:
            rows[n]["ap_minus_" + base] = rows[n]["ap"] - rows[base]["ap"]
    report = {"machine": {**machine(), "lscpu_model": _lscpu_model(), "cpu_bf16": cpu_has_bf16(),
                          "threads": args.threads, "load_average_before": list(load_before),
                          "load_average_after": list(load_after),
                          "note": "shared machine: other jobs ran at the same time; read the ratios"},
              "model": args.model, "images_timed": len(timed), "rounds": args.rounds,
              "ap_images": len(ims[: args.ap_limit]) if aps else 0, "settings": rows}
    lines = [f"# Backends end to end: {args.model}", "",
             f"{report['machine']['lscpu_model']}, {args.threads} threads, bf16 instructions: "
             f"{'yes' if report['machine']['cpu_bf16'] else 'no'}; load average {load_before[0]:.1f} before, "
             f"{load_after[0]:.1f} after (shared machine: read the ratios). {len(timed)} coco_mini images x "
             f"{args.rounds} interleaved rounds; AP over {report['ap_images']} images.", "",
             f"| setting | precision | median ms / frame | FPS | FPS vs {base} | AP | AP - {base} |",
             "|---|---|---|---|---|---|---|"]
    for n, r in rows.items():
        ap_txt = f"{r['ap']:.4f}" if r["ap"] is not None else "-"
        d_txt = f"{r['ap_minus_' + base]:+.4f}" if aps else "-"
        lines.append(f"| {n} ({r['backend']} {r['version']}) | {r['precision']} | {r['median_ms']:.1f} | "
                     f"{r['fps']:.2f} | x{r['fps_vs_' + base]:.2f} | {ap_txt} | {d_txt} |")
    md = "\n".join(lines) + "\n"
    out = RESULTS if args.update_results else args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "backends.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "backends.md").write_text(md)
    print(md + f"\nwrote {out / 'backends.json'} and {out / 'backends.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
