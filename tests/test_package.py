"""The package's plain values: version, topology, DecoderConfig, Poses."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgepose
from edgepose import BODYPOSENET, DecoderConfig, Poses, Topology
from edgepose.topology import COCO17_KEYPOINTS, coco17_to_topology


def test_one_version_everywhere():
    from edgepose import _decoder

    assert _decoder.__version__ == edgepose.__version__
    from pathlib import Path

    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # Python 3.9 / 3.10: the same parser as a package (a [test] extra there)
        import tomli as tomllib

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert meta["project"]["dynamic"] == ["version"]  # read from edgepose/_version.py, nowhere else


def test_bodyposenet_layout_matches_tao():
    t = BODYPOSENET
    assert (t.num_keypoints, t.num_limbs, t.heatmap_channels, t.paf_channel_count) == (18, 19, 19, 38)
    assert t.limbs[0] == (1, 8) and t.limbs[9] == (2, 16) and t.limbs[18] == (15, 17)
    assert t.paf_channels[7] == (14, 15)
    assert t.starts_person[:17] == (True,) * 17 and t.starts_person[17:] == (False, False)
    rows = t.limb_array()
    assert rows.shape == (19, 4) and rows.dtype == np.int32
    # COCO-17 by name: every COCO keypoint maps to the BodyPoseNet keypoint of the same name
    for coco_name, i in zip(COCO17_KEYPOINTS, t.to_coco17):
        assert t.keypoints[i] == coco_name
    # flip pairs swap left and right names
    for a, b in t.flip_pairs:
        assert t.keypoints[a].replace("right", "left") == t.keypoints[b]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(limbs=((0, 0),)), "not a pair"),
        (dict(limbs=((0, 5),)), "not a pair"),
        (dict(paf_channels=((0, 0),)), "exactly once"),
        (dict(starts_person=()), "starts_person"),
    ],
)
def test_topology_rejects_inconsistent_tables(kwargs, message):
    base = dict(name="t", keypoints=("a", "b"), limbs=((0, 1),), paf_channels=((0, 1),), starts_person=(True,))
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Topology(**base)


def test_neck_is_synthesised_from_both_shoulders():
    coco = np.zeros((2, 17, 3), np.float32)
    coco[0, 5] = (10, 20, 2)  # left shoulder
    coco[0, 6] = (30, 40, 1)  # right shoulder
    coco[1, 5] = (10, 20, 2)  # one shoulder only: no neck
    out = coco17_to_topology(coco)
    assert out.shape == (2, 18, 3)
    np.testing.assert_allclose(out[0, 1], (20, 30, 1))
    np.testing.assert_allclose(out[0, 5], (10, 20, 2))
    np.testing.assert_allclose(out[0, 2], (30, 40, 1))
    assert (out[1, 1] == 0).all()


@pytest.mark.parametrize(
    "field, value",
    [
        ("peak_threshold", float("nan")),
        ("nms_radius", -1),
        ("max_peaks", 0),
        ("paf_samples", 1),
        ("max_paf_samples", 5),
        ("min_sample_fraction", 1.5),
        ("refine", "cubic"),
        ("matching", "hungarian?"),
        ("person_score", "max"),
        ("min_parts", 0),
        ("max_persons", 0),
    ],
)
def test_decoder_config_rejects_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        DecoderConfig().replace(**{field: value})


# TAO's reference post-processing as ../shared/design/tao_bodyposenet.md documents it (section
# "TAO's reference post-processing"), in DecoderConfig's terms (docs/decoder.md).
TAO_DOCUMENTED = {
    "peak_threshold": 0.1,  # step 3: local maxima above heatmap_threshold = 0.1
    "nms_radius": 1,  # step 3: a 3x3 window
    "refine": "none",  # step 3: no sub-pixel refinement
    "paf_samples": 10,  # step 4: 10 samples on the segment ...
    "paf_sample_step": 0.0,  # ... whatever its length
    "paf_threshold": 0.05,  # step 4: a sample counts when the projection exceeds 0.05
    "min_sample_fraction": 0.9,  # step 4: more than 80% must count, i.e. 9 of 10
    "limb_score": "mean_passing",  # step 4: score = mean of the counting samples
    "length_prior": 0.0,  # step 4: nothing else in the score ...
    "min_limb_score": 0.0,  # ... and no limb-score cut beyond the sample count
    "peak_score_weight": 0.0,  # step 5: matched by that score alone
    "matching": "greedy",  # step 5: greedy per limb by descending score, each peak once
    "nearest_partners": 0,  # step 5: every candidate pair is scored, not only near ones
    "assembly_order": "limb",  # step 6: limb by limb
    "merge": True,  # step 6: grow or merge person rows
    "min_parts": 4,  # step 6: drop persons with fewer than 4 parts ...
    "min_person_score": 0.4,  # ... or a mean score below 0.4
    "person_score": "tao",  # step 6: person score = 1 - 1/total
}


def test_decoder_config_presets():
    tao = DecoderConfig.tao().to_dict()
    default = DecoderConfig().to_dict()
    # Every field: the documented value, or (what the document does not set: the caps and the
    # fragment exponent, which person_score "tao" does not use) edgepose's default.
    want = {name: TAO_DOCUMENTED.get(name, value) for name, value in default.items()}
    assert set(TAO_DOCUMENTED) <= set(default)
    assert tao == want
    assert DecoderConfig.ideal().to_dict() == {**default, "min_parts": 1, "min_person_score": 0.0, "nms_radius": 1}
    assert json.loads(json.dumps(DecoderConfig().to_dict())) == DecoderConfig().to_dict()


def test_poses_value_semantics():
    kp = np.zeros((3, 18, 3), np.float32)
    kp[:, 0] = [[1, 2, 0.9], [3, 4, 0.8], [5, 6, 0.7]]
    p = Poses(kp, np.array([0.9, 0.8, 0.7]))
    assert len(p) == 3 and p.keypoints.dtype == np.float32
    assert len(p[1:]) == 2 and len(p[0]) == 1 and len(p[np.array([True, False, True])]) == 2
    assert p.visible.sum() == 3
    assert len(Poses.empty()) == 0 and Poses.empty().keypoints.shape == (0, 18, 3)
    coco = p.to_coco(image_id=7)
    assert len(coco) == 3 and len(coco[0]["keypoints"]) == 51 and coco[0]["image_id"] == 7
    assert coco[0]["keypoints"][:3] == [1.0, 2.0, 1.0]
    assert json.loads(json.dumps(p.to_dict()))["persons"][2]["keypoints"][0] == [5.0, 6.0, pytest.approx(0.7)]
    with pytest.raises(ValueError, match="expected shape"):
        Poses(np.zeros((2, 17, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="scores"):
        Poses(kp, np.zeros(2))


def test_poses_allclose_compares_keypoints_visibility_and_scores():
    kp = np.zeros((2, 18, 3), np.float32)
    kp[:, 0] = [[100, 200, 0.9], [300, 40, 0.8]]
    kp[0, 1] = (110, 220, 0.7)
    p = Poses(kp, np.array([0.9, 0.8]))
    assert p.allclose(p) is True and p.diff(p) == ""
    assert p.allclose(Poses(kp.copy(), np.array([0.9, 0.8]))) is True

    def changed(**edits) -> Poses:
        k, sc = kp.copy(), np.array([0.9, 0.8], np.float32)
        for (m, c, i), v in edits.get("kp", {}).items():
            k[m, c, i] = v
        for m, v in edits.get("score", {}).items():
            sc[m] = v
        return Poses(k, sc)

    moved = changed(kp={(1, 0, 0): 300.01})
    assert not p.allclose(moved) and "person 1 keypoint 0 x" in p.diff(moved)
    assert p.allclose(moved, atol=0.02) and not p.allclose(moved, atol=0.005)
    assert p.allclose(moved, rtol=1e-4) and p.diff(moved, rtol=1e-4) == ""  # 0.01 <= 1e-4 * 300
    rescored = changed(score={0: 0.91})
    assert not p.allclose(rescored) and p.diff(rescored).startswith("person 0 score")
    assert not p.allclose(changed(kp={(0, 1, 2): 0.75}))  # a keypoint's score
    assert "keypoint 1 score" in p.diff(changed(kp={(0, 1, 2): 0.75}))
    lost = changed(kp={(0, 1, 0): 0, (0, 1, 1): 0, (0, 1, 2): 0})
    assert not p.allclose(lost, atol=1e3) and "keypoints found differ" in p.diff(lost, atol=1e3)
    assert not p.allclose(p[:1]) and p.diff(p[:1]) == "2 persons vs 1"
    assert not p.allclose(p[::-1], atol=1e-3)  # order matters
    other = Topology("t18", tuple(f"k{i}" for i in range(18)), ((0, 1),), ((0, 1),), (True,))
    assert not p.allclose(Poses(kp, p.scores, other)) and "topology" in p.diff(Poses(kp, p.scores, other))


def test_import_is_light():
    import subprocess
    import sys

    heavy = "('onnxruntime', 'cv2', 'tensorrt', 'cuda')"
    code = f"import sys, edgepose; print(any(m.startswith({heavy}) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_decode_stays_the_function_after_its_module_is_imported():
    import importlib
    import sys

    import edgepose.pipeline  # noqa: F401  (imports the submodule edgepose.decode, as EdgePose does)

    module = sys.modules["edgepose.decode"]
    importlib.reload(edgepose)  # a fresh `from edgepose import decode` after the submodule exists
    from edgepose import decode

    assert callable(decode) and decode is module.decode
    assert edgepose.decode is module.decode and edgepose.Decoder is module.Decoder


@pytest.mark.slow
def test_the_tree_installs_twice_into_a_fresh_venv(tmp_path):
    """A second ``pip install .`` of a tree that already holds a build folder works (it failed on the
    CMakeCache.txt of the first install's deleted build environment), and so does an editable install
    of the same tree; each time the installed decoder decodes."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    tree = tmp_path / "tree"
    shutil.copytree(repo, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.so", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        ".ruff_cache", "out"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    env.pop("PYTHONPATH", None)
    check = ("import numpy as np, edgepose, sys; from edgepose import render_heatmaps, render_pafs, decode; "
             "kp = np.zeros((1, 18, 3)); kp[0, :, :2] = np.random.default_rng(0).uniform(40, 300, (18, 2)); "
             "kp[0, :, 2] = 1; h = render_heatmaps(kp, shape=(46, 46), stride=8); "
             "p = render_pafs(kp, shape=(46, 46), stride=8); print(edgepose._decoder.__file__); "
             "sys.exit(0 if len(decode(h, p, heatmap_stride=8)) >= 1 else 'no person decoded')")
    for args in ([str(tree)], [str(tree)], ["-e", str(tree)]):
        r = subprocess.run([str(python), "-m", "pip", "install", "-q", *args], env=env, capture_output=True,
                           text=True)
        assert r.returncode == 0, f"pip install {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        r = subprocess.run([str(python), "-c", check], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
    assert (tree / "build").is_dir()  # the non-editable installs did build in the tree (the case that broke)
    assert r.stdout.strip().startswith(str(tree))  # the last check ran the editable install
