"""Make tracking-benchmark sequences only (mp4 + ground-truth JSON), optionally with previews.

    python benchmarks/tracking/generate.py --out /tmp/seqs                       # 8 sequences from coco_mini
    python benchmarks/tracking/generate.py --images DIR --annotations COCO.json --out /tmp/seqs --sequences 20 --seed 5
    python benchmarks/tracking/generate.py --out /tmp/seqs --preview              # + NAME.preview.mp4, GT drawn

See :mod:`benchmarks.tracking.sequences` for how they are made; ``run.py`` makes them itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import DATA  # noqa: E402
from benchmarks.tracking import sequences  # noqa: E402


def preview(gt_path: Path) -> Path:
    """NAME.preview.mp4 beside the sequence: its ground truth drawn (labelled keypoints, box, id)."""
    import cv2

    from benchmarks.tracking.detect import read_video

    doc = sequences.load_ground_truth(gt_path)
    cfg = doc["config"]
    out = gt_path.with_name(gt_path.stem + ".preview.mp4")
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), cfg["fps"], (cfg["width"], cfg["height"]))
    for image, frame in zip(read_video(gt_path.with_suffix(".mp4")), doc["frames"]):
        for p in frame["persons"]:
            colour = (128, 128, 128) if p["ignore"] else (0, 255, 0)
            x1, y1, x2, y2 = (int(round(v)) for v in p["box"])
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 1)
            cv2.putText(image, str(p["id"]), (x1 + 2, y1 + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
            for x, y, v in p["keypoints"]:
                if v > 0:
                    cv2.circle(image, (int(round(x)), int(round(y))), 2, (0, 0, 255) if v == 2 else (255, 0, 0), -1)
        writer.write(image)
    writer.release()
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sequences.add_arguments(p, DATA)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--preview", action="store_true")
    args = p.parse_args(argv)
    cfg = sequences.config_from(p, args)
    for gt in sequences.make_sequences(args.images, args.annotations, args.out, args.sequences, seed=args.seed,
                                       config=cfg, log=print):
        if args.preview:
            print(f"wrote {preview(gt)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
