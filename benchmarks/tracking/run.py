"""The tracking benchmark: labelled pose video made from COCO, edgepose's detections, four trackers.

    python benchmarks/tracking/run.py                      # 8 sequences of 90 frames from coco_mini
    python benchmarks/tracking/run.py --images DIR --annotations COCO.json --sequences 20 --seed 7
    python benchmarks/tracking/run.py --update-results     # also benchmarks/results/tracking.{json,md}

Steps (each cached under ``--work``, default /tmp/edgepose-bench/tracking): make the sequences
(:mod:`benchmarks.tracking.sequences`), detect every frame with EdgePose and the OMZ model at its
default settings (:mod:`benchmarks.tracking.detect`), then run on the same detections, side by side:
no tracking (a fresh id per detection), a greedy box-IoU tracker, edgepose's PoseTracker, and
PoseTracker with One Euro smoothing; score each with :mod:`benchmarks.tracking.metrics`. The cost
of ``tracker.update`` is timed per frame on these sequences and on one extra sequence of 10
persons (``--cost-people``). Writes tracking.json and tracking.md to ``--out`` (default: the work
folder). Needs ``pip install ".[bench]"`` (motmetrics) and ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402
from benchmarks.tracking import detect, metrics, sequences, trackers  # noqa: E402

DATA = common.DATA
RESULTS = common.RESULTS
DEFAULT_WORK = Path("/tmp/edgepose-bench/tracking")


def machine(threads: Optional[int]) -> Dict[str, Any]:
    """benchmarks.common.machine() plus the CPU model from lscpu, the threads, the load and the commit."""
    info = dict(common.machine())
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    import edgepose

    info.update(commit=rev or "unknown", usable_threads=len(os.sched_getaffinity(0)),
                onnxruntime_threads=threads or "default",
                load_avg_1_5_15=[round(v, 2) for v in os.getloadavg()], edgepose=edgepose.__version__,
                time=time.strftime("%H:%M UTC", time.gmtime()))
    return info


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sequences.add_arguments(p, DATA)
    p.add_argument("--model", type=Path, default=DATA / "models" / "omz_human_pose_estimation_0001.onnx")
    p.add_argument("--cost-people", type=int, default=10, help="persons of the extra timing sequence (0: none)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for the detector")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch folder: sequences, detections")
    p.add_argument("--out", type=Path, default=None, help="where tracking.json/.md go (default: --work)")
    p.add_argument("--update-results", action="store_true", help="also write benchmarks/results/tracking.*")
    args = p.parse_args(argv)
    args.config = sequences.config_from(p, args)
    return args


def load_detections(gt_path: Path, args: argparse.Namespace, log: Any) -> List[Any]:
    gt_path = Path(gt_path)
    video = gt_path.with_suffix(".mp4")
    cache = args.work / "detections" / args.model.stem / gt_path.parent.name / f"{gt_path.stem}.npz"

    def make_model() -> Any:
        from edgepose import EdgePose

        return EdgePose(str(args.model), threads=args.threads)

    return detect.detections(video, args.model, cache, make_model=make_model, log=log)


def evaluate(gt_paths: List[Path], args: argparse.Namespace, log: Any, oracle: bool = False) -> Dict[str, Any]:
    """Every method on every sequence: on edgepose's detections, or (``oracle``) on the ground truth."""
    rows, skipped = trackers.methods()
    per_method: Dict[str, Dict[str, Any]] = {name: {"per_sequence": {}, "update_ms": []} for name in rows}
    for gt_path in gt_paths:
        doc = sequences.load_ground_truth(gt_path)
        dets = [p for p, _ in metrics.ground_truth_poses(doc)] if oracle else load_detections(gt_path, args, log)
        fps = float(doc["config"]["fps"])
        for name, make in rows.items():
            outs, ms = trackers.run_tracker(make(), dets, fps)
            hyps = [metrics.from_poses(p, ids) for p, ids in outs]
            res = metrics.score_sequence(doc, hyps, name=doc["name"])
            res["people"] = len(doc["people"])
            res["update_ms_mean"] = float(ms.mean())
            per_method[name]["per_sequence"][doc["name"]] = res
            per_method[name]["update_ms"].extend(ms.tolist())
    out = {}
    for name, r in per_method.items():
        ms = np.asarray(r.pop("update_ms"))
        r["summary"] = metrics.summarize(r["per_sequence"])
        r["summary"]["update_ms_mean"] = float(ms.mean())
        r["summary"]["update_ms_median"] = float(np.median(ms))
        r["summary"]["update_ms_p90"] = float(np.percentile(ms, 90))
        out[name] = r
    return {"methods": out, "skipped": skipped}


def cost_run(args: argparse.Namespace, log: Any, passes: int = 5) -> Optional[Dict[str, Any]]:
    """ms per update on one sequence with ``--cost-people`` persons: the median frame of the best pass."""
    if args.cost_people <= 0:
        return None
    n = args.cost_people
    # As wide as n persons need at the density of the main sequences (about 4 per frame width),
    # the paths spread over the whole width.
    cfg = replace(args.config, people=(n, n), width=max(args.config.width, int(round(args.config.width * n / 4))),
                  spread=0.9)
    folder = args.work / "sequences_cost"
    gt = sequences.make_sequences(args.images, args.annotations, folder, 1, seed=args.seed, config=cfg, log=log)[0]
    dets = load_detections(gt, args, log)
    rows, _ = trackers.methods()
    out: Dict[str, Any] = {"people": n, "frames": len(dets), "size": [cfg.width, cfg.height],
                           "detections_per_frame": float(np.mean([len(p) for p in dets]))}
    for name, make in rows.items():
        if name == "no tracking":
            continue
        best = None
        for _ in range(passes):
            _, ms = trackers.run_tracker(make(), dets, cfg.fps)
            med = float(np.median(ms))
            best = med if best is None else min(best, med)
        out[name] = {"update_ms_median": best}
    return out


def fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.{nd}f}"
    return str(v)


def summary_table(methods: Dict[str, Any], skipped: Dict[str, str]) -> List[str]:
    lines = ["| method | IDF1 | MOTA | ID switches / seq (max) | fragm. / seq | precision | recall "
             "| kp error px | jitter px | update ms (median) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in methods.items():
        s = r["summary"]
        ms = "-" if name == "no tracking" else fmt(s["update_ms_median"])
        lines.append(f"| {name} | {fmt(s['idf1'])} | {fmt(s['mota'])} | {fmt(s['switches_per_sequence'], 2)} "
                     f"({s['switches_max']}) | {fmt(s['fragmentations_per_sequence'], 2)} | {fmt(s['precision'])} "
                     f"| {fmt(s['recall'])} | {fmt(s['kp_error_px'], 2)} | {fmt(s['jitter_px'], 2)} | {ms} |")
    for name, why in skipped.items():
        lines.append(f"| {name} | skipped: {why} | | | | | | | | |")
    return lines


def markdown(report: Dict[str, Any]) -> str:
    m = report["machine"]
    cfg = report["config"]
    lines = [
        "# Tracking benchmark",
        "",
        f"{report['sequences']} sequences of {cfg['frames']} frames, {cfg['width']}x{cfg['height']} at "
        f"{cfg['fps']:g} fps, {cfg['people'][0]}-{cfg['people'][1]} persons each (seed {report['seed']}), made "
        f"from `{report['annotations']}`; detections: EdgePose + `{report['model']}` (default settings). "
        "See docs/tracking_benchmark.md.",
        "",
        f"Machine: {m['cpu']}, {m['usable_threads']} threads usable, load average {m['load_avg_1_5_15']} at the "
        f"start and {report['load_avg_end']} at the end (shared machine: timings are noisy); {m['date']} {m['time']}, "
        f"commit {m['commit']}.",
        "",
    ]
    lines += summary_table(report["methods"], report["skipped"])
    cost = report.get("cost")
    if cost:
        w, h = cost["size"]
        lines += ["", f"Cost of `update` on a sequence of {cost['people']} persons ({w}x{h}, "
                      f"{fmt(cost['detections_per_frame'], 1)} detections per frame, median frame of the best of "
                      "5 passes): " + ", ".join(f"{k} {fmt(v['update_ms_median'])} ms" for k, v in cost.items()
                                                if isinstance(v, dict)) + "."]
    meth = report["methods"]
    if "PoseTracker" in meth and "PoseTracker + smoothing" in meth:
        a, b = meth["PoseTracker"]["summary"], meth["PoseTracker + smoothing"]["summary"]
        lines += ["", f"Smoothing: jitter x{fmt(b['jitter_px'] / a['jitter_px'], 3)}, keypoint error "
                      f"x{fmt(b['kp_error_px'] / a['kp_error_px'], 3)} of PoseTracker alone."]
    lines += ["", "The same trackers fed the ground truth itself (every person in view, its labelled keypoints "
                  "exact): their own association errors, without the detector's.", ""]
    lines += summary_table(report["on_ground_truth"], {})
    lines += ["", "Per sequence (IDF1 / ID switches):", "",
              "| sequence | persons | " + " | ".join(meth) + " |", "|---|---|" + "---|" * len(meth)]
    first = next(iter(meth.values()))["per_sequence"]
    for seq, r in first.items():
        cells = [f"{fmt(meth[k]['per_sequence'][seq]['idf1'])} / {meth[k]['per_sequence'][seq]['num_switches']}"
                 for k in meth]
        lines.append(f"| {seq} | {r['people']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    info = machine(args.threads)
    t0 = time.time()
    gt_paths = sequences.make_sequences(args.images, args.annotations, args.work / "sequences", args.sequences,
                                        seed=args.seed, config=args.config, log=log)
    report: Dict[str, Any] = {
        "machine": info, "sequences": len(gt_paths), "seed": args.seed, "config": args.config.to_dict(),
        "annotations": str(args.annotations), "images": str(args.images), "model": args.model.name,
    }
    report.update(evaluate(gt_paths, args, log))
    report["on_ground_truth"] = evaluate(gt_paths, args, log, oracle=True)["methods"]
    report["cost"] = cost_run(args, log)
    report["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    report["wall_s"] = round(time.time() - t0, 1)
    text = markdown(report)
    out = args.out or args.work
    targets = [out] + ([RESULTS] if args.update_results else [])
    for folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tracking.json").write_text(json.dumps(report, indent=1) + "\n")
        (folder / "tracking.md").write_text(text)
        log(f"wrote {folder / 'tracking.json'} and {folder / 'tracking.md'}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
