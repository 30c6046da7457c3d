"""Pre-processing variants: resize mode (letterbox, stretch, height) x filter (linear, cubic) x batch (1, 8).

    python benchmarks/bench_preprocess.py

Frames are the coco_mini images (real photos of assorted sizes, about 640x480; random 480x640
frames when the data is absent), brought to a fixed 368x656 NHWC float32 input with the tf-pose
normalisation through ``edgepose.preprocess.preprocess``, the function the pipeline times as its
``preprocess`` stage. Each variant runs over the same frames, in batches of 1 and of 8; the figure
is milliseconds per *frame* (a batch's time / its size), median and p90 over the batches. The
cheapest variant's median is the unit of the "relative" column, a ratio that holds on a noisy
machine. Writes preprocess_speed.json and preprocess_speed.md to --out (default
$TMPDIR/edgepose-bench), or to benchmarks/results/ with --update-results.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import COCO_MINI, add_output_options, machine, output_dir, percentiles, write_results  # noqa: E402
from edgepose.bench import synthetic_frames  # noqa: E402
from edgepose.preprocess import preprocess  # noqa: E402
from edgepose.spec import ModelSpec  # noqa: E402

INPUT = (368, 656)
MODES = ("letterbox", "stretch", "height")
FILTERS = ("linear", "cubic")
BATCHES = (1, 8)
FRAMES = 64  # frames per variant and batch size (8 batches of 8)


def load_frames() -> Tuple[List[np.ndarray], str]:
    """The first FRAMES coco_mini images, or random frames when the data is absent; and which."""
    import cv2

    paths = sorted((COCO_MINI / "images").glob("*.jpg"))[:FRAMES]
    frames = [f for f in (cv2.imread(str(p)) for p in paths) if f is not None]
    if len(frames) < FRAMES:
        return synthetic_frames(FRAMES, (480, 640)), "synthetic"
    return frames, "coco_mini"


def time_variant(frames: List[np.ndarray], spec: ModelSpec, batch: int) -> Dict[str, Any]:
    batches = [frames[i:i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    preprocess(batches[0], spec)  # warm-up
    per_frame: List[float] = []
    for _ in range(3):  # three passes over the frames
        for b in batches:
            t0 = time.perf_counter()
            preprocess(b, spec)
            per_frame.append((time.perf_counter() - t0) * 1e3 / len(b))
    return {"mode": spec.resize, "interpolation": spec.interpolation, "batch": batch,
            "ms_per_frame": percentiles(per_frame), "frames": len(per_frame) * batch}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_options(ap)
    folder = output_dir(ap.parse_args(argv))
    frames, source = load_frames()
    base = ModelSpec.tfpose().replace(input_size=INPUT)
    rows = []
    for mode in MODES:
        for interp in FILTERS:
            for batch in BATCHES:
                rows.append(time_variant(frames, base.replace(resize=mode, interpolation=interp), batch))
                r = rows[-1]
                print(f"{mode:9} {interp:6} batch {batch}: {r['ms_per_frame']['median']:.2f} ms/frame", flush=True)
    fastest = min(r["ms_per_frame"]["median"] for r in rows)
    for r in rows:
        r["relative"] = r["ms_per_frame"]["median"] / fastest
    path = write_results("preprocess_speed", {"input_size": list(INPUT), "frames": source, "variants": rows}, folder)
    m = machine()
    lines = ["# Pre-processing speed", "",
             f"Command: `python benchmarks/bench_preprocess.py`. Machine: {m['cpu']}, {m['cores']} cores; "
             f"Python {m['python']}, numpy {m['numpy']}; {m['date']}. {len(frames)} {source} frames to a "
             f"{INPUT[0]}x{INPUT[1]} float32 NHWC input; milliseconds per frame.", "",
             "| resize | filter | batch | median | p90 | relative |", "|---|---|---|---|---|---|"]
    for r in rows:
        p = r["ms_per_frame"]
        lines.append(f"| {r['mode']} | {r['interpolation']} | {r['batch']} | {p['median']:.2f} | {p['p90']:.2f} "
                     f"| {r['relative']:.2f} |")
    md = folder / "preprocess_speed.md"
    md.write_text("\n".join(lines) + "\n")
    print(md.read_text())
    print(f"wrote {path} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
