"""Poses: the accessors apps reach for (ids, boxes, conf, xyn, names, COCO-17, supervision), on real
decoded persons (OMZ golden maps of a coco_mini image)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgepose import BackendUnavailable, Poses, decode
from edgepose.topology import BODYPOSENET, COCO17_KEYPOINTS


@pytest.fixture(scope="module")
def poses(golden_maps) -> Poses:
    h, p, layout = golden_maps["omz_human_pose_estimation_0001"]
    (out,) = decode(h, p, heatmap_stride=8, layout=layout)
    assert len(out) >= 3, "the golden image holds several persons"
    assert (~out.visible).any(), "some keypoints are missing (the tests need both kinds)"
    return out


class _Scale:
    """A stand-in Transform: x2 in both axes."""

    def to_image(self, xy):
        return np.asarray(xy) * 2.0


def test_ids_are_validated_and_kept_by_selection_translate_to_image(poses):
    assert poses.ids is None and "tracked" not in repr(poses)
    ids = np.arange(10, 10 + len(poses))
    t = poses.with_ids(ids)
    assert t.ids.dtype == np.int64 and t.ids.tolist() == ids.tolist() and "tracked" in repr(t)
    assert t[1].ids.tolist() == [11]
    assert t[[2, 0]].ids.tolist() == [12, 10]
    assert t[t.scores > np.median(t.scores)].ids.tolist() == ids[poses.scores > np.median(poses.scores)].tolist()
    assert [int(p.ids[0]) for p in t] == ids.tolist()
    assert t.translate(3, -2).ids.tolist() == ids.tolist()
    scaled = t.to_image(_Scale())
    assert scaled.ids.tolist() == ids.tolist()
    assert np.allclose(scaled.xy[poses.visible], 2 * poses.xy[poses.visible])
    with pytest.raises(ValueError, match="ids"):
        poses.with_ids(np.arange(len(poses) + 1))
    with pytest.raises(ValueError, match="integers"):
        poses.with_ids(np.linspace(0, 1, len(poses)))
    assert Poses.empty().with_ids(np.zeros(0, np.int64)).ids.shape == (0,)


def test_boxes_hold_exactly_the_found_keypoints(poses):
    boxes = poses.boxes
    assert boxes.shape == (len(poses), 4) and boxes.dtype == np.float32
    for box, kp in zip(boxes, poses.keypoints):
        found = kp[kp[:, 2] > 0, :2]
        assert box.tolist() == [found[:, 0].min(), found[:, 1].min(), found[:, 0].max(), found[:, 1].max()]
    kp = poses.keypoints.copy()
    kp[0] = 0  # a person without keypoints gets an all-zero box
    assert Poses(kp, poses.scores).boxes[0].tolist() == [0, 0, 0, 0]
    assert Poses.empty().boxes.shape == (0, 4)


def test_conf_names_and_normalised_coordinates(poses):
    assert poses.keypoint_names == BODYPOSENET.keypoints and poses.keypoint_names[:2] == ("nose", "neck")
    assert np.array_equal(poses.conf, poses.keypoints[:, :, 2])
    assert poses.conf.max() > 0.5
    w, h = 552, 368  # the golden maps' network input
    xyn = poses.xyn(w, h)
    assert xyn.shape == (len(poses), 18, 2)
    vis = poses.visible
    assert np.allclose(xyn[vis, 0] * w, poses.xy[vis, 0]) and np.allclose(xyn[vis, 1] * h, poses.xy[vis, 1])
    assert (xyn[~vis] == 0).all()
    assert 0 <= xyn[vis].min() and xyn[vis].max() <= 1
    with pytest.raises(ValueError, match="width and height"):
        poses.xyn(0, h)


def test_to_coco17_follows_coco_names_and_drops_the_neck(poses):
    k17 = poses.to_coco17()
    assert k17.shape == (len(poses), 17, 3)
    names = poses.keypoint_names
    for c, name in enumerate(COCO17_KEYPOINTS):
        assert np.array_equal(k17[:, c], poses.keypoints[:, names.index(name)]), name
    neck = poses.keypoints[:, names.index("neck")]
    assert neck[:, 2].max() > 0  # the neck is found, and it is not among the 17
    # The COCO result dicts hold the same coordinates where a keypoint is found.
    for k, result in zip(k17, poses.to_coco()):
        flat = np.array(result["keypoints"]).reshape(17, 3)
        found = k[:, 2] > 0
        assert np.allclose(flat[found, :2], k[found, :2], atol=0.01) and (flat[~found] == 0).all()


def test_to_dict_adds_id_and_box_only_when_tracked(poses):
    plain = poses.to_dict()["persons"]
    assert set(plain[0]) == {"score", "keypoints"}
    tracked = poses.with_ids(np.arange(len(poses)) + 1).to_dict()["persons"]
    for i, (person, box) in enumerate(zip(tracked, poses.boxes)):
        assert list(person) == ["score", "keypoints", "id", "box"]
        assert person["id"] == i + 1 and person["box"] == pytest.approx(box.tolist())
        assert person["keypoints"] == plain[i]["keypoints"]


def test_to_supervision_without_supervision_names_the_install(poses, monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # import supervision -> ImportError
    with pytest.raises(BackendUnavailable, match="pip install supervision"):
        poses.to_supervision()


def test_to_supervision_gives_keypoints_in_coco_order(poses):
    sv = pytest.importorskip("supervision")
    ids = np.arange(len(poses)) + 5
    kp = poses.with_ids(ids).to_supervision()
    assert isinstance(kp, sv.KeyPoints) and len(kp) == len(poses)
    assert np.array_equal(kp.xy, poses.to_coco17()[:, :, :2])
    conf = kp.keypoint_confidence if hasattr(kp, "keypoint_confidence") else kp.confidence
    assert np.array_equal(conf, poses.to_coco17()[:, :, 2])
    assert kp.data["tracker_id"].tolist() == ids.tolist()
    assert kp[[0]].data["tracker_id"].tolist() == [5]  # supervision's own selection keeps it
