"""edgepose.coco on coco_mini's real annotations: loading, conversion and COCO keypoint AP."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from edgepose import BODYPOSENET, EdgePoseError, Poses, coco
from edgepose.topology import COCO17_KEYPOINTS

pytest.importorskip("pycocotools", reason="COCO evaluation needs pycocotools (pip install edgepose[coco])")


def _gt_results(annotations: dict) -> list:
    """Every image's ground truth, through Poses, as COCO results."""
    out = []
    for image in annotations["images"]:
        out += coco.poses_to_results(coco.ground_truth_poses(annotations, image["id"]), image["id"])
    return out


def test_ground_truth_fed_back_scores_one(coco_annotations, capsys):
    results = _gt_results(coco_annotations)
    labelled = [
        a for a in coco_annotations["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0
    ]
    assert len(results) == len(labelled) > 100
    metrics = coco.evaluate(results, coco_annotations)
    assert list(metrics) == ["AP", "AP50", "AP75", "APm", "APl", "AR"]
    assert all(v == pytest.approx(1.0) for v in metrics.values()), metrics
    assert capsys.readouterr().out == "", "pycocotools' printing must be silenced"


def test_jittered_ground_truth_scores_lower(coco_annotations):
    results = _gt_results(coco_annotations)
    rng = np.random.default_rng(0)
    jittered = []
    for r in results:
        kp = np.array(r["keypoints"]).reshape(17, 3)
        found = kp[:, 2] > 0
        kp[found, :2] += rng.normal(0.0, 6.0, size=(found.sum(), 2))
        jittered.append(dict(r, keypoints=kp.reshape(-1).tolist()))
    metrics = coco.evaluate(jittered, coco_annotations)
    assert 0.05 < metrics["AP"] < 0.95, metrics
    # Looser OKS thresholds forgive more of the jitter.
    assert metrics["AP50"] > metrics["AP75"] >= 0.0


def test_empty_results_score_zero(coco_annotations):
    assert coco.evaluate([], coco_annotations) == dict.fromkeys(coco.METRICS, 0.0)


def test_image_ids_restrict_the_evaluation(coco_annotations):
    with_people = [im["id"] for im in coco_annotations["images"]
                   if len(coco.ground_truth_poses(coco_annotations, im["id"]))]
    first = with_people[0]
    one = coco.poses_to_results(coco.ground_truth_poses(coco_annotations, first), first)
    # Only this image is run: perfect. Counted against all images: most persons are missed.
    assert coco.evaluate(one, coco_annotations, image_ids=[first])["AP"] == pytest.approx(1.0)
    assert coco.evaluate(one, coco_annotations)["AR"] < 0.2


def test_images_without_people(coco_annotations):
    empty = [im["id"] for im in coco_annotations["images"]
             if not len(coco.ground_truth_poses(coco_annotations, im["id"]))]
    assert empty, "coco_mini has true negatives"
    assert len(coco.ground_truth_poses(coco_annotations, empty[0])) == 0
    # A false detection on an image without people: no persons to find, AP undefined -> 0.
    fake = Poses(np.tile(np.array([[10.0, 20.0, 0.9]], np.float32), (18, 1))[None], np.array([0.9]))
    metrics = coco.evaluate(coco.poses_to_results(fake, empty[0]), coco_annotations, image_ids=[empty[0]])
    assert metrics == dict.fromkeys(coco.METRICS, 0.0)


def test_18_to_17_mapping_is_by_name(coco_annotations):
    for coco_index, bpn_index in enumerate(BODYPOSENET.to_coco17):
        assert BODYPOSENET.keypoints[bpn_index] == COCO17_KEYPOINTS[coco_index]
    # A round trip through the 18-keypoint layout gives back the labelled COCO keypoints exactly.
    image_id = next(a["image_id"] for a in coco_annotations["annotations"] if a.get("num_keypoints", 0) > 5)
    gt = [a for a in coco_annotations["annotations"]
          if a["image_id"] == image_id and not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
    poses = coco.ground_truth_poses(coco_annotations, image_id)
    assert len(poses) == len(gt)
    for r, a in zip(coco.poses_to_results(poses, image_id), gt):
        got, want = np.array(r["keypoints"]).reshape(17, 3), np.array(a["keypoints"], float).reshape(17, 3)
        labelled = want[:, 2] > 0
        assert np.array_equal(got[:, 2] > 0, labelled)
        np.testing.assert_allclose(got[labelled, :2], want[labelled, :2])
    # The neck (not in COCO) is the shoulders' midpoint.
    p = poses.keypoints[0]
    rs, ls, neck = (BODYPOSENET.index(n) for n in ("right_shoulder", "left_shoulder", "neck"))
    if p[rs, 2] > 0 and p[ls, 2] > 0:
        np.testing.assert_allclose(p[neck, :2], (p[rs, :2] + p[ls, :2]) / 2)


def test_results_keep_sub_pixel_coordinates():
    kp = np.zeros((1, 18, 3), np.float32)
    kp[0, BODYPOSENET.index("nose")] = (10.25, 20.75, 0.9)
    (r,) = coco.poses_to_results(Poses(kp, np.array([0.5], np.float32)), image_id=7)
    assert r["keypoints"][:3] == [10.25, 20.75, 1.0]
    assert r["image_id"] == 7 and r["category_id"] == 1 and r["score"] == 0.5


def test_load_from_file_and_validation(tmp_path, coco_annotations):
    good = tmp_path / "ann.json"
    good.write_text(json.dumps(coco_annotations))
    assert len(coco.load_annotations(good)["images"]) == len(coco_annotations["images"])

    with pytest.raises(EdgePoseError, match="not found"):
        coco.load_annotations(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(EdgePoseError, match=r"bad\.json: not valid json"):
        coco.load_annotations(bad)
    bad.write_text("[]")
    with pytest.raises(EdgePoseError, match="top level is a list"):
        coco.load_annotations(bad)

    broken = copy.deepcopy(coco_annotations)
    del broken["categories"]
    with pytest.raises(EdgePoseError, match="missing list 'categories'"):
        coco.evaluate([], broken)
    broken = copy.deepcopy(coco_annotations)
    next(a for a in broken["annotations"] if a.get("keypoints"))["keypoints"] = [1, 2, 3]
    with pytest.raises(EdgePoseError, match="51 numbers"):
        coco.load_annotations(broken)
    broken = copy.deepcopy(coco_annotations)
    broken["annotations"][0]["image_id"] = -5
    with pytest.raises(EdgePoseError, match="image_id -5"):
        coco.load_annotations(broken)


def test_bad_results_are_named(coco_annotations):
    image_id = coco_annotations["images"][0]["id"]
    with pytest.raises(EdgePoseError, match=r"results\[0\]: missing score"):
        coco.evaluate([{"image_id": image_id, "keypoints": [0.0] * 51}], coco_annotations)
    with pytest.raises(EdgePoseError, match="not an image of the annotations"):
        coco.evaluate([{"image_id": -1, "keypoints": [0.0] * 51, "score": 1.0}], coco_annotations)
    with pytest.raises(EdgePoseError, match="51 finite numbers"):
        coco.evaluate([{"image_id": image_id, "keypoints": [np.nan] * 51, "score": 1.0}], coco_annotations)
    with pytest.raises(EdgePoseError, match="not an image"):
        coco.ground_truth_poses(coco_annotations, -1)


def test_evaluate_does_not_modify_its_inputs(coco_annotations):
    results = _gt_results(coco_annotations)[:5]
    before_res, before_ann = copy.deepcopy(results), copy.deepcopy(coco_annotations)
    coco.evaluate(results, coco_annotations)
    assert results == before_res and coco_annotations == before_ann
