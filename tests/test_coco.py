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


def _person(annotations: dict, index: int = 0) -> dict:
    return [a for a in annotations["annotations"] if a["category_id"] == 1][index]


@pytest.mark.parametrize("damage, words", [
    (lambda a: _person(a).pop("bbox"), r"annotations\[\d+\] \(id \d+\): missing 'bbox'"),
    (lambda a: _person(a).pop("area"), r"missing 'area'"),
    (lambda a: _person(a).pop("iscrowd"), r"missing 'iscrowd'"),
    (lambda a: _person(a).pop("num_keypoints"), r"missing 'num_keypoints'"),
    (lambda a: _person(a).pop("id"), r"missing 'id'"),
    (lambda a: _person(a).pop("keypoints"), r"missing 'keypoints'"),
    (lambda a: _person(a).__setitem__("keypoints", [str(v) for v in _person(a)["keypoints"]]),
     r"'keypoints' must be 17 x 3 = 51 finite numbers"),
    (lambda a: _person(a)["keypoints"].__setitem__(4, None), r"'keypoints' must be 17 x 3 = 51 finite numbers"),
    (lambda a: _person(a).__setitem__("bbox", [1, 2, "3", 4]), r"'bbox' must be 4 finite numbers"),
    (lambda a: _person(a).__setitem__("area", None), r"'area' must be a finite number"),
    (lambda a: _person(a).__setitem__("iscrowd", "no"), r"'iscrowd' must be 0 or 1"),
    (lambda a: _person(a).__setitem__("num_keypoints", 2.5), r"'num_keypoints' must be an integer"),
    (lambda a: _person(a, 1).__setitem__("id", _person(a)["id"]), r"annotations\[\d+\]: id \d+ appears twice"),
    (lambda a: a["images"][1].__setitem__("id", a["images"][0]["id"]), r"images\[1\]: id \d+ appears twice"),
    (lambda a: a.__setitem__("annotations", [x for x in a["annotations"] if x["category_id"] != 1]),
     r"no person annotation"),
])
def test_annotations_that_cannot_be_scored_are_refused_naming_the_first(coco_annotations, damage, words):
    broken = copy.deepcopy(coco_annotations)
    damage(broken)
    with pytest.raises(EdgePoseError, match=words):
        coco.evaluate([], broken)  # before any scoring, even with no results at all


def test_eval_refuses_unscorable_annotations_before_the_model_loads(tmp_path, coco_annotations, capsys):
    from conftest import COCO_MINI

    from edgepose.cli import main

    broken = copy.deepcopy(coco_annotations)
    _person(broken, 3)["keypoints"] = None
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(broken))
    not_a_model = tmp_path / "m.onnx"
    not_a_model.write_bytes(b"not a model")  # loading it would fail: the annotations must fail first
    code = main(["eval", "--model", str(not_a_model), "--images", str(COCO_MINI / "images"),
                 "--annotations", str(path)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "ann.json" in err and "annotations[" in err and "'keypoints'" in err, err
    # The images chosen (--limit) must hold a labelled person, or every metric would be 0.
    path.write_text(json.dumps(coco_annotations))
    empty = next(i for i, im in enumerate(coco_annotations["images"])
                 if not len(coco.ground_truth_poses(coco_annotations, im["id"])))
    only_empty = copy.deepcopy(coco_annotations)
    ims = only_empty["images"]
    only_empty["images"] = [ims[empty]] + ims[:empty] + ims[empty + 1:]
    path.write_text(json.dumps(only_empty))
    code = main(["eval", "--model", str(not_a_model), "--images", str(COCO_MINI / "images"),
                 "--annotations", str(path), "--limit", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "no labelled person" in err and "Traceback" not in err, err
