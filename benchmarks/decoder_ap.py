"""COCO keypoint AP of the decoder, on real maps and on ideal (oracle) maps of coco_mini.

    python benchmarks/decoder_ap.py                 # default config: real maps of both models + oracle
    python benchmarks/decoder_ap.py --config tao    # a preset (default, tao, ideal) or a JSON of fields

Real maps: cached ONNX Runtime outputs (benchmarks/common.py), decoded with the C++ decoder, mapped to
image pixels and scored with pycocotools. Oracle maps: rendered from the annotations at stride 8
(Gaussian sigma 1 cell, PAF band 1 cell), the decoder's ceiling on perfect network outputs.
Writes decoder_ap.json to --out (default $TMPDIR/edgepose-bench), or to benchmarks/results/ with
--update-results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ANNOTATIONS, REAL_MODELS, add_output_options, cached_maps, output_dir, write_results  # noqa: E402
from edgepose import DecoderConfig, Poses  # noqa: E402
from edgepose.coco import evaluate, ground_truth_poses, load_annotations  # noqa: E402
from edgepose.decode import Decoder  # noqa: E402
from edgepose.render import render_heatmaps, render_pafs  # noqa: E402

ORACLE_STRIDE = 8


def parse_config(text: Optional[str]) -> DecoderConfig:
    if text in (None, "default"):
        return DecoderConfig()
    if text in ("tao", "ideal"):
        return getattr(DecoderConfig, text)()
    return DecoderConfig(**json.loads(text))


def real_map_ap(model: str, config: DecoderConfig, maps: Optional[Dict[str, object]] = None,
                calibrated: bool = False) -> Dict[str, float]:
    """AP of ``config`` on the cached real outputs of ``model`` for every coco_mini image; with
    ``calibrated``, the spec's measured keypoint offset is applied as ``EdgePose`` does."""
    maps = maps or cached_maps(model)
    spec = maps["spec"]
    decoder = Decoder(spec.topology, config)
    results: List[dict] = []
    for iid, heat, paf, tr in zip(maps["ids"], maps["heatmaps"], maps["pafs"], maps["transforms"]):
        poses = decoder.decode(heat, paf, heatmap_stride=spec.heatmap_stride, paf_stride=spec.paf_stride,
                               layout=spec.output_layout)
        if calibrated:
            poses = poses.translate(*spec.keypoint_offset)
        results += poses.to_image(tr).to_coco(image_id=iid)
    return evaluate(results, str(ANNOTATIONS))


def oracle_maps(annotations: dict, image_id: int, stride: int = ORACLE_STRIDE):
    """Ideal heatmap and PAF (NHWC) for one image, rendered from its annotations at ``stride``."""
    im = next(i for i in annotations["images"] if i["id"] == image_id)
    shape = (-(-im["height"] // stride), -(-im["width"] // stride))
    gt = ground_truth_poses(annotations, image_id)
    kp = gt.keypoints
    return (render_heatmaps(kp, shape=shape, stride=stride, sigma=1.0),
            render_pafs(kp, shape=shape, stride=stride, width=1.0))


def oracle_ap(config: DecoderConfig) -> Dict[str, float]:
    """AP of ``config`` on ideal maps rendered from the coco_mini annotations."""
    annotations = load_annotations(str(ANNOTATIONS))
    decoder = Decoder(config=config)
    results: List[dict] = []
    for im in annotations["images"]:
        heat, paf = oracle_maps(annotations, im["id"])
        poses: Poses = decoder.decode(heat, paf, heatmap_stride=ORACLE_STRIDE, paf_stride=ORACLE_STRIDE)
        results += poses.to_coco(image_id=im["id"])
    return evaluate(results, annotations)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="default | tao | ideal | JSON of DecoderConfig fields")
    ap.add_argument("--models", nargs="*", default=list(REAL_MODELS))
    ap.add_argument("--no-oracle", action="store_true")
    add_output_options(ap)
    args = ap.parse_args(argv)
    folder = output_dir(args)
    config = parse_config(args.config)
    out: Dict[str, object] = {"config": config.to_dict(), "real": {}}
    out["calibrated"] = {}
    for model in args.models:
        maps = cached_maps(model)
        out["real"][model] = real_map_ap(model, config, maps)
        out["calibrated"][model] = real_map_ap(model, config, maps, calibrated=True)
        print(f"{model:34s} AP {out['real'][model]['AP']:.4f} (decoder alone), "
              f"{out['calibrated'][model]['AP']:.4f} with the spec's keypoint offset")
    if not args.no_oracle:
        out["oracle"] = {"ideal": oracle_ap(DecoderConfig.ideal()), "this_config": oracle_ap(config)}
        print(f"oracle maps: ideal config AP {out['oracle']['ideal']['AP']:.3f}, "
              f"this config AP {out['oracle']['this_config']['AP']:.3f}")
    print("wrote", write_results("decoder_ap", out, folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
