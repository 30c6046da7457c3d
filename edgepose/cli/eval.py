"""``edgepose eval``: COCO keypoint AP of a model on a folder of annotated images.

Runs the model on every image listed in the annotation file (the first ``--limit`` of them, in
file order), scores the detections with pycocotools against those images only, prints AP, AP50,
AP75, APm, APl and AR, and writes them to ``--json`` (exactly those six keys).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

from ..errors import InputError
from ._common import (
    FRAME_ERRORS,
    CLIError,
    Reporter,
    add_accuracy_options,
    add_model_options,
    check_new_file,
    frame_problem,
    model_inputs,
    open_model,
    positive_int,
    read_image,
)

HELP = "COCO keypoint AP of a model on annotated images"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help=HELP, description=__doc__.split("\n\n")[0])
    add_model_options(p)
    add_accuracy_options(p)
    p.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder holding the images")
    p.add_argument("--annotations", required=True, type=Path, metavar="COCO.json",
                   help="COCO person-keypoints annotation file")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the six metrics here as JSON")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="evaluate only the first N images of the annotation file")
    p.add_argument("--overwrite", action="store_true", help="replace --json if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def run(args: argparse.Namespace) -> int:
    from .. import coco

    # Everything the user gave is checked before the model loads.
    annotations = coco.load_annotations(args.annotations, scoring=True)  # what pycocotools needs, up front
    coco._pycocotools()  # a missing optional dependency is reported now, not after the whole run
    if not args.images.is_dir():
        raise CLIError(f"--images {args.images}: folder not found")
    if args.json is not None:
        check_new_file(args.json, args.overwrite, "--json", [args.annotations, *model_inputs(args)])
    images: List[Dict[str, Any]] = annotations["images"][: args.limit]
    if not images:
        raise CLIError(f"--annotations {args.annotations}: lists no images")
    chosen = {im["id"] for im in images}
    if not any(a["image_id"] in chosen and a.get("category_id") == coco.PERSON_CATEGORY_ID and not a["iscrowd"]
               and a["num_keypoints"] > 0 for a in annotations["annotations"]):
        raise CLIError(f"--annotations {args.annotations}: the {len(images)} image(s) to evaluate have no labelled "
                       "person, so every metric would be 0" + (" (raise --limit)" if args.limit else ""))
    missing = [im.get("file_name", "?") for im in images if not (args.images / str(im.get("file_name", ""))).is_file()]
    if missing:
        raise CLIError(
            f"--images {args.images}: {len(missing)} of the {len(images)} annotated images are missing "
            f"(first: {missing[0]})"
        )

    report = Reporter("edgepose eval", progress=not args.no_progress)
    results: List[Dict[str, Any]] = []
    evaluated: List[int] = []
    inference_ms = 0.0
    with open_model(args) as model:
        report.start(len(images))
        try:
            for im in images:
                try:
                    frame = read_image(args.images / im["file_name"])
                except InputError as e:
                    # Left out of the scored set: scoring it as "no detections" would be wrong too.
                    report.message(f"skipped: {e}")
                    report.advance()
                    continue
                try:
                    poses = model.infer(frame)
                except FRAME_ERRORS as e:  # too wide, NaN maps: left out of the scored set like an unreadable image
                    report.message(f"skipped: {args.images / im['file_name']}: {frame_problem(e)}")
                    report.advance()
                    continue
                inference_ms += float(model.last_timings.get("total", 0.0))
                results += coco.poses_to_results(poses, im["id"])
                evaluated.append(im["id"])
                report.advance()
        finally:
            report.finish()

    metrics = coco.evaluate(results, annotations, image_ids=evaluated)
    for name, value in metrics.items():
        print(f"{name:<5} {value:.4f}")
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
            f.write("\n")
    mean_ms = inference_ms / max(len(evaluated), 1)
    report.message(f"{len(evaluated)} images, {len(results)} detections, {mean_ms:.1f} ms per image")
    return 0
