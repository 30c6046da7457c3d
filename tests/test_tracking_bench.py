"""The tracking benchmark's own machinery (benchmarks/tracking): generator and scorer, on real COCO material."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import COCO_MINI, REPO, need

sys.path.insert(0, str(REPO))

from benchmarks.tracking import metrics, sequences, trackers  # noqa: E402
from edgepose import Poses  # noqa: E402
from edgepose.topology import coco17_to_topology  # noqa: E402

CFG = sequences.SequenceConfig(frames=12, width=320, height=240)


@pytest.fixture(scope="module")
def sources():
    return sequences.load_sources(need(COCO_MINI / "images"), need(COCO_MINI / "person_keypoints.json"), CFG)


@pytest.fixture(scope="module")
def rendered(sources):
    plan = sequences.plan_sequence(sources, CFG, seed=3, index=1)
    return plan, list(sequences.render(plan, CFG))


def test_sources_are_persons_and_person_free_backgrounds(sources):
    ann = json.loads((COCO_MINI / "person_keypoints.json").read_text())
    with_person = {a["image_id"] for a in ann["annotations"]}
    by_id = {a["id"]: a for a in ann["annotations"]}
    assert len(sources.persons) >= 8 and len(sources.backgrounds) >= 8
    assert not {iid for iid, _ in sources.backgrounds} & with_person
    for p in sources.persons:
        a = by_id[p.annotation_id]
        assert not a["iscrowd"] and a["num_keypoints"] >= CFG.min_keypoints and a["area"] >= CFG.min_area


def test_generator_is_deterministic(sources, rendered):
    plan, frames = rendered
    again = list(sequences.render(sequences.plan_sequence(sources, CFG, seed=3, index=1), CFG))
    for (a, ga, _), (b, gb, _) in zip(frames, again):
        assert np.array_equal(a, b) and ga == gb
    other = sequences.plan_sequence(sources, CFG, seed=4, index=1)
    assert [p.person.annotation_id for p in other.paths] != [p.person.annotation_id for p in plan.paths] or \
        other.background != plan.background
    lo, hi = CFG.people
    assert lo <= len(plan.paths) <= hi


def test_ground_truth_lies_on_the_pasted_person(rendered):
    import cv2

    plan, frames = rendered
    W, H = CFG.width, CFG.height
    on, total, moved = 0, 0, False
    for t, (image, gt, masks) in enumerate(frames):
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        depth = {p["id"]: p["depth"] for p in gt["persons"]}
        for p in gt["persons"]:
            kp = np.array(p["keypoints"])
            lab = kp[:, 2] > 0
            assert lab.sum() == p["visible_keypoints"]
            assert (kp[lab, 0] >= 0).all() and (kp[lab, 0] <= W - 1).all()
            assert (kp[lab, 1] >= 0).all() and (kp[lab, 1] <= H - 1).all()
            x1, y1, x2, y2 = p["box"]
            assert (kp[lab, 0] >= x1 - 2).all() and (kp[lab, 0] <= x2 + 2).all()
            xi, yi = np.rint(kp[lab, 0]).astype(int), np.rint(kp[lab, 1]).astype(int)
            # No labelled keypoint sits under a nearer person.
            for q, mask in masks.items():
                if q != p["id"] and depth[q] > p["depth"]:
                    assert not mask[yi, xi].any()
            # Keypoints COCO marks visible land on the person's own visible pixels (3 px of slack
            # for the polygon's precision).
            own = cv2.dilate(masks[p["id"]].astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            vis = kp[:, 2] == 2
            on += int(own[np.rint(kp[vis, 1]).astype(int), np.rint(kp[vis, 0]).astype(int)].sum())
            total += int(vis.sum())
        if t and frames[t][1]["persons"] != frames[t - 1][1]["persons"]:
            moved = True
    assert total > 50 and on / total >= 0.95, f"{on} of {total} visible keypoints on the person"
    assert moved


def test_mirror_swaps_left_and_right(sources):
    plan = sequences.plan_sequence(sources, CFG, seed=3, index=1)
    path = replace(plan.paths[0], mirror=False, x_mid=CFG.width / 2, velocity=0.0, wobble=(0.0, 30.0, 0.0),
                   depth=(0.9, 0.0, 60.0, 0.0))
    one = replace(plan, paths=(path,))
    two = replace(plan, paths=(replace(path, mirror=True),))
    a = np.array(next(sequences.render(one, CFG))[1]["persons"][0]["keypoints"])
    b = np.array(next(sequences.render(two, CFG))[1]["persons"][0]["keypoints"])
    flip = list(sequences.COCO17_FLIP)
    lab = (a[flip, 2] > 0) & (b[:, 2] > 0)
    assert lab.sum() >= 8
    assert np.allclose(b[lab, 0], CFG.width - a[flip][lab, 0], atol=0.02)  # mirrored about the box centre
    assert np.allclose(b[lab, 1], a[flip][lab, 1], atol=0.02)


def test_written_video_matches_the_frames(sources, tmp_path):
    from benchmarks.tracking.detect import read_video

    cfg = replace(CFG, frames=6)
    plan = sequences.plan_sequence(sources, cfg, seed=0, index=0)
    video, gt_path = sequences.write_sequence(plan, sources, cfg, tmp_path)
    doc = sequences.load_ground_truth(gt_path)
    decoded = read_video(video)
    assert len(decoded) == len(doc["frames"]) == 6
    for img, (ref, gt, _), saved in zip(decoded, sequences.render(plan, cfg), doc["frames"]):
        mse = np.mean((img.astype(np.float64) - ref) ** 2)
        assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 25  # the mp4 codec's loss only
        assert saved == gt
    assert doc["key"] == sequences.plan_key(plan, sources, cfg)


def _doc(rendered):
    plan, frames = rendered
    return {"name": plan.name, "config": CFG.to_dict(), "frames": [gt for _, gt, _ in frames]}


def _gt_hyps(doc, relabel=None, offset=None):
    """Ground truth fed back as detections (through edgepose's 18-keypoint Poses and back)."""
    hyps = []
    for t, (poses, ids) in enumerate(metrics.ground_truth_poses(doc)):
        if offset is not None:
            poses = poses.translate(offset(t), 0.0)
        hyps.append(metrics.from_poses(poses, ids + 100 if relabel is None else relabel(t, ids)))
    return hyps


def test_ground_truth_as_detections_scores_perfectly(rendered):
    pytest.importorskip("motmetrics")
    doc = _doc(rendered)
    r = metrics.score_sequence(doc, _gt_hyps(doc))
    assert r["idf1"] == 1.0 and r["mota"] == 1.0 and r["num_switches"] == 0 and r["num_false_positives"] == 0
    assert r["kp_error_px"] < 1e-3 and r["jitter_px"] < 1e-3 and r["matched_keypoints"] > 100


def test_scorer_counts_id_switches_and_jitter(rendered):
    pytest.importorskip("motmetrics")
    doc = _doc(rendered)
    counted = [{p["id"] for p in f["persons"] if not p["ignore"]} for f in doc["frames"]]
    always = sorted(set.intersection(*counted))
    assert len(always) >= 2
    a, b = always[:2]
    mid = len(doc["frames"]) // 2

    def new_id(t, ids):
        return np.where((ids == a) & (t >= mid), 999, ids)

    one = metrics.score_sequence(doc, _gt_hyps(doc, relabel=new_id))
    assert one["num_switches"] == 1 and one["idf1"] < 1.0 and one["mota"] < 1.0

    def swap(t, ids):
        return np.where(t >= mid, np.where(ids == a, b, np.where(ids == b, a, ids)), ids)

    assert metrics.score_sequence(doc, _gt_hyps(doc, relabel=swap))["num_switches"] == 2
    # +-0.5 px alternating on x: error 0.5 px, second difference 2 px on every keypoint.
    shaky = metrics.score_sequence(doc, _gt_hyps(doc, offset=lambda t: 0.5 if t % 2 else -0.5))
    assert shaky["num_switches"] == 0
    assert shaky["kp_error_px"] == pytest.approx(0.5, abs=0.01) and shaky["jitter_px"] == pytest.approx(2.0, abs=0.02)


def test_oks_and_iou_baseline():
    gt = np.zeros((1, 17, 3))
    gt[0, :, 0], gt[0, :, 1], gt[0, :, 2] = 100 + np.arange(17) * 5.0, 50 + np.arange(17) * 8.0, 2
    pred = gt.copy()
    pred[0, :, 2] = 1.0
    assert metrics.oks(gt, [2000.0], pred)[0, 0] == pytest.approx(1.0)
    far = pred.copy()
    far[0, :, 0] += 30
    assert metrics.oks(gt, [2000.0], far)[0, 0] < 0.5
    missing = pred.copy()
    missing[0, 8:, 2] = 0
    assert metrics.oks(gt, [2000.0], missing)[0, 0] == pytest.approx(8 / 17)
    # Greedy IoU: a person moving a little keeps its id, a new one far away gets another.
    kp = coco17_to_topology(gt)
    tr = trackers.GreedyIoU()
    _, i0 = tr.update(Poses(kp, [1.0]), 0.0)
    moved = kp.copy()
    moved[0, :, 0] += 3 * (moved[0, :, 2] > 0)
    other = kp.copy()
    other[0, :, 1] += 200 * (other[0, :, 2] > 0)
    _, i1 = tr.update(Poses(np.concatenate([other, moved]), [1.0, 1.0]), 1 / 30)
    assert i1[1] == i0[0] and i1[0] != i0[0]
