"""The C++ decoder (edgepose.decode) against the numpy reference (edgepose._reference).

Both implement docs/decoder.md. They must find the same persons in the same order, with the same
keypoints present, positions within 1e-3 px and scores within 1e-4, on real network outputs (three
models, NHWC and NCHW) and on maps rendered from every coco_mini image's annotations. The last
tests check the reference itself against facts that do not depend on either decoder.
"""

from __future__ import annotations

import itertools
import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from edgepose._reference import assignment_max, decode_reference, find_peaks_reference
from edgepose.config import DecoderConfig
from edgepose.render import render_heatmaps, render_pafs
from edgepose.results import Poses
from edgepose.topology import BODYPOSENET, coco17_to_topology

STRIDE = 8
XY_TOL = 1e-3  # px (both compute in double; measured: they agree within 1e-6 px on every case here)
SCORE_TOL = 1e-4

CONFIGS: Dict[str, DecoderConfig] = {
    "default": DecoderConfig(),
    "tao": DecoderConfig.tao(),
    "ideal": DecoderConfig.ideal(),
    "optimal": DecoderConfig(matching="optimal"),
    "score_order": DecoderConfig(assembly_order="score", peak_score_weight=0.1),
    "adaptive_prior": DecoderConfig(
        paf_sample_step=1.0, paf_samples=5, length_prior=0.5, limb_score="mean_passing", refine="centroid"
    ),
    # caps, no merge, a wider NMS, quadratic refinement and another person score
    "capped": DecoderConfig(
        refine="quadratic", nms_radius=2, max_peaks=3, max_persons=2, merge=False, min_parts=2,
        min_person_score=0.2, person_score="mean_parts", min_sample_fraction=0.6,
    ),  # fmt: skip
    # few partners per peak (rule 2.0 prunes pairs on every multi-person map), no fragment scoring
    "near2": DecoderConfig(nearest_partners=2, min_parts=1, min_person_score=0.0, parts_exponent=1.0),
}


def cpp_decode():
    """edgepose.decode (the C++ decoder); until it lands, these tests fail on the import."""
    from edgepose.decode import decode

    return decode


def disagreement(got: Poses, ref: Poses) -> Optional[str]:
    """None when the C++ result matches the reference within tolerance, else the first difference."""
    if len(got) != len(ref):
        return f"{len(got)} persons (C++) vs {len(ref)} (reference); scores {got.scores} vs {ref.scores}"
    for m in range(len(ref)):
        gv, rv = got.visible[m], ref.visible[m]
        if not np.array_equal(gv, rv):
            return (f"person {m}: keypoints present differ: C++ {np.flatnonzero(gv).tolist()} "
                    f"vs reference {np.flatnonzero(rv).tolist()}")  # fmt: skip
        dxy = np.abs(got.keypoints[m, :, :2] - ref.keypoints[m, :, :2]).max(axis=1)  # (N,), 0 where absent
        if dxy.max() > XY_TOL:
            c = int(dxy.argmax())
            return f"person {m} keypoint {c}: C++ {got.keypoints[m, c]} vs reference {ref.keypoints[m, c]}"
        dk = np.abs(got.keypoints[m, :, 2] - ref.keypoints[m, :, 2]).max()
        if dk > SCORE_TOL:
            return f"person {m}: keypoint scores differ by {dk}"
        if abs(float(got.scores[m]) - float(ref.scores[m])) > SCORE_TOL:
            return f"person {m}: score {got.scores[m]} (C++) vs {ref.scores[m]} (reference)"
    return None


# ------------------------------------------------------------------------------------------------
# Real network outputs
# ------------------------------------------------------------------------------------------------


MODELS = ["tfpose_mobilenet_thin", "tfpose_mobilenet_v2_small", "omz_human_pose_estimation_0001"]


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("model", MODELS)
def test_golden_outputs_agree(golden_maps, model, config_name):
    decode = cpp_decode()
    heat, paf, layout = golden_maps[model]
    config = CONFIGS[config_name]
    got = decode(heat, paf, heatmap_stride=STRIDE, layout=layout, config=config)
    ref = decode_reference(heat, paf, heatmap_stride=STRIDE, layout=layout, config=config)
    assert isinstance(got, list) and isinstance(ref, list) and len(got) == len(ref) == 1  # 4-D in, list out
    problem = disagreement(got[0], ref[0])
    assert problem is None, f"{model} / {config_name}: {problem}"
    if config_name == "default":
        assert len(ref[0]) >= 2, "the golden image shows several players; the decoders should find them"


@pytest.mark.parametrize("model", ["tfpose_mobilenet_thin", "omz_human_pose_estimation_0001"])
def test_golden_float16_and_single_image_agree(golden_maps, model):
    decode = cpp_decode()
    heat, paf, layout = golden_maps[model]
    heat16, paf16 = heat[0].astype(np.float16), paf[0].astype(np.float16)  # 3-D: one image
    got = decode(heat16, paf16, heatmap_stride=STRIDE, layout=layout)
    ref = decode_reference(heat16, paf16, heatmap_stride=STRIDE, layout=layout)
    assert isinstance(got, Poses) and isinstance(ref, Poses)
    problem = disagreement(got, ref)
    assert problem is None, f"{model} float16: {problem}"


# ------------------------------------------------------------------------------------------------
# Maps rendered from coco_mini annotations
# ------------------------------------------------------------------------------------------------


def gt_persons(coco_annotations: dict) -> List[Tuple[int, Tuple[int, int], np.ndarray]]:
    """(image id, (height, width), (M, 18, 3) keypoints) for all 130 images, persons or not."""
    by_image: Dict[int, list] = {im["id"]: [] for im in coco_annotations["images"]}
    for ann in coco_annotations["annotations"]:
        if ann.get("num_keypoints", 0) > 0 and not ann.get("iscrowd", 0):
            by_image[ann["image_id"]].append(ann["keypoints"])
    out = []
    for im in coco_annotations["images"]:
        kp17 = np.array(by_image[im["id"]], dtype=np.float32).reshape(-1, 17, 3)
        out.append((im["id"], (im["height"], im["width"]), coco17_to_topology(kp17)))
    return out


@pytest.fixture(scope="module")
def rendered(coco_annotations) -> List[Tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(image id, GT keypoints, heatmap, paf) at stride 8 for every coco_mini image, NHWC."""
    out = []
    for image_id, (h, w), kp in gt_persons(coco_annotations):
        shape = (math.ceil(h / STRIDE), math.ceil(w / STRIDE))
        out.append((image_id, kp, render_heatmaps(kp, shape=shape, stride=STRIDE),
                    render_pafs(kp, shape=shape, stride=STRIDE)))  # fmt: skip
    assert len(out) == 130
    return out


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_rendered_maps_agree_on_every_image(rendered, config_name):
    decode = cpp_decode()
    config = CONFIGS[config_name]
    problems, persons = [], 0
    for image_id, _, heat, paf in rendered:
        got = decode(heat, paf, heatmap_stride=STRIDE, config=config)
        ref = decode_reference(heat, paf, heatmap_stride=STRIDE, config=config)
        persons += len(ref)
        problem = disagreement(got, ref)
        if problem:
            problems.append(f"image {image_id}: {problem}")
    assert not problems, f"{config_name}: {len(problems)} of {len(rendered)} images disagree:\n" + "\n".join(problems)
    assert persons > 50, "the rendered maps hold 141 annotated persons; most should be found"


def test_rendered_nchw_batch_with_finer_paf_agrees(rendered):
    """NCHW batch, PAF at stride 4 under a stride-8 heatmap (as BodyPoseNet's 8 / 2)."""
    decode = cpp_decode()
    chosen = [r for r in rendered if len(r[1]) >= 2][:6]
    shape = chosen[0][2].shape[:2]
    same = [r for r in chosen if r[2].shape[:2] == shape]  # a batch needs one size
    heat = np.stack([r[2] for r in same]).transpose(0, 3, 1, 2)
    pafs = np.stack([
        render_pafs(r[1], shape=(shape[0] * 2, shape[1] * 2), stride=STRIDE // 2, layout="NCHW") for r in same
    ])  # fmt: skip
    got = decode(heat, pafs, heatmap_stride=STRIDE, paf_stride=STRIDE // 2, layout="NCHW")
    ref = decode_reference(heat, pafs, heatmap_stride=STRIDE, paf_stride=STRIDE // 2, layout="NCHW")
    assert len(got) == len(ref) == len(same)
    for (image_id, *_), g, r in zip(same, got, ref):
        problem = disagreement(g, r)
        assert problem is None, f"image {image_id}: {problem}"


def random_configs(count: int, seed: int) -> List[DecoderConfig]:
    """Seeded random DecoderConfigs over every option (greedy matching: with optimal matching, exact
    ties in the keys of ideal maps make several assignments maximal, and the spec accepts any)."""
    rng = np.random.default_rng(seed)

    def pick(*values):
        return values[int(rng.integers(len(values)))]

    return [
        DecoderConfig(
            peak_threshold=pick(0.05, 0.1, 0.3), nms_radius=pick(0, 1, 2, 3),
            refine=pick("none", "centroid", "quadratic", "gaussian"), max_peaks=pick(1, 3, 64),
            paf_samples=pick(2, 5, 10), paf_sample_step=pick(0.0, 0.5, 1.0), paf_threshold=pick(-0.1, 0.05, 0.2),
            min_sample_fraction=pick(0.0, 0.5, 0.8, 1.0), limb_score=pick("mean", "mean_passing"),
            length_prior=pick(0.0, 0.1, 0.5), min_limb_score=pick(-0.5, 0.0, 0.3),
            peak_score_weight=pick(-0.5, 0.0, 0.1),
            assembly_order=pick("limb", "score"), merge=pick(True, False), min_parts=pick(1, 2, 4),
            min_person_score=pick(0.0, 0.2, 0.4), person_score=pick("mean", "tao", "mean_parts"),
            max_persons=pick(1, 5, 100),
        )  # fmt: skip
        for _ in range(count)
    ]


def test_random_configs_agree(golden_maps, rendered):
    decode = cpp_decode()
    maps = [(m, h[0], p[0], layout) for m, (h, p, layout) in golden_maps.items()]
    maps += [(f"image {r[0]}", r[2], r[3], "NHWC") for r in rendered if len(r[1]) >= 3][:6]
    problems = []
    for i, config in enumerate(random_configs(40, seed=2024)):
        name, heat, paf, layout = maps[i % len(maps)]
        problem = disagreement(
            decode(heat, paf, heatmap_stride=STRIDE, layout=layout, config=config),
            decode_reference(heat, paf, heatmap_stride=STRIDE, layout=layout, config=config),
        )
        if problem:
            problems.append(f"{name} with {config}: {problem}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------
# The reference on its own
# ------------------------------------------------------------------------------------------------


def test_reference_recovers_rendered_keypoints(rendered):
    """On ideal maps, gaussian refinement puts peaks on the annotated keypoints (sub-pixel)."""
    hits = total = 0
    for _, kp, heat, paf in rendered:
        for pose in decode_reference(heat, paf, heatmap_stride=STRIDE, config=DecoderConfig.ideal()):
            for c in np.flatnonzero(pose.visible[0]):
                x, y = pose.keypoints[0, c, :2]
                gt = kp[kp[:, c, 2] > 0, c, :2]
                total += 1
                hits += bool(len(gt)) and float(np.hypot(gt[:, 0] - x, gt[:, 1] - y).min()) < 0.05
    assert total > 900  # ~1400 labelled keypoints (+ necks) in the 141 persons
    assert hits / total > 0.95, f"only {hits} of {total} decoded keypoints sit on an annotated one"


def test_reference_groups_ideal_maps_into_the_annotated_persons(rendered):
    """On ideal maps, decoded persons are annotated persons: almost every annotated person is found,
    and the keypoints of a decoded pose (those that sit on an annotated keypoint) belong to one
    annotated person. (Where two persons' Gaussians overlap, a peak can move off its keypoint.)"""
    found = expected = mixed = 0
    for _, kp, heat, paf in rendered:
        poses = decode_reference(heat, paf, heatmap_stride=STRIDE, config=DecoderConfig.ideal())
        owners_of_found = set()
        for pose in poses.keypoints:
            owners = set()
            for c in np.flatnonzero(pose[:, 2] > 0):
                d = np.where(kp[:, c, 2] > 0, np.hypot(kp[:, c, 0] - pose[c, 0], kp[:, c, 1] - pose[c, 1]), np.inf)
                if d.min() < 0.5:
                    owners.add(int(d.argmin()))
            mixed += len(owners) > 1
            owners_of_found |= owners
        linked = [m for m, p in enumerate(kp) if any(p[a, 2] > 0 and p[b, 2] > 0 for a, b in BODYPOSENET.limbs)]
        expected += len(linked)
        found += len(owners_of_found & set(linked))
    assert expected > 120
    assert found >= 0.97 * expected, f"{found} of {expected} annotated persons found"
    assert mixed <= 0.03 * expected, f"{mixed} decoded persons mix keypoints of several annotated ones"


def test_assignment_is_optimal_against_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(200):
        r, c = (int(v) for v in rng.integers(0, 6, size=2))
        w = rng.random((r, c)) * (rng.random((r, c)) > 0.3)
        pairs = assignment_max(w)
        assert len(pairs) == min(r, c) and len({a for a, _ in pairs}) == len({b for _, b in pairs}) == len(pairs)
        if r <= c:
            best = max((sum(w[i, p[i]] for i in range(r)) for p in itertools.permutations(range(c), r)), default=0)
        else:
            best = max((sum(w[p[j], j] for j in range(c)) for p in itertools.permutations(range(r), c)), default=0)
        assert sum(w[a, b] for a, b in pairs) == pytest.approx(best, abs=1e-12)


def test_optimal_beats_greedy_where_greedy_is_trapped():
    """Greedy takes the single best pair (0.9) and loses 0.8 + 0.8; optimal keeps both."""
    from edgepose._reference import Connection, _match

    cands = [Connection(0, 0, 0.9, 0.9), Connection(0, 1, 0.8, 0.8), Connection(1, 0, 0.8, 0.8)]
    assert [(c.a, c.b) for c in _match(cands, 2, 2, "greedy")] == [(0, 0)]
    assert [(c.a, c.b) for c in _match(cands, 2, 2, "optimal")] == [(0, 1), (1, 0)]


def test_peak_rules():
    cfg = DecoderConfig(refine="none", max_peaks=2, nms_radius=1)
    h = np.zeros((5, 7))
    h[1, 1] = h[1, 2] = 0.5  # a plateau: its first cell in raster order only
    h[3, 5] = 0.9
    h[3, 3] = 0.7
    peaks = find_peaks_reference(h, 8.0, cfg)
    assert [(p.score, p.x, p.y) for p in peaks] == [(0.9, 5 * 8 + 3.5, 3 * 8 + 3.5), (0.7, 3 * 8 + 3.5, 3 * 8 + 3.5)]
    peaks = find_peaks_reference(h, 8.0, cfg.replace(max_peaks=5))
    assert [(p.x, p.y) for p in peaks][2] == (1 * 8 + 3.5, 1 * 8 + 3.5)
    assert len(peaks) == 3


@pytest.mark.parametrize("min_parts", [1, 2])
def test_limb_ends_are_capped_alike(min_parts):
    """More than 128 peaks per keypoint: both decoders pair only the strongest 128 of each limb end
    (rule 2); with min_parts 1 the rest still come out as one-part persons (rule 4.5)."""
    from edgepose import _decoder
    from edgepose._reference import MAX_LIMB_PEAKS
    from edgepose.topology import Topology

    assert _decoder.MAX_LIMB_PEAKS == MAX_LIMB_PEAKS
    topo = Topology("pair", ("a", "b"), ((0, 1),), ((0, 1),), (True,))
    heat = np.zeros((49, 49, 3), np.float32)
    heat[0:48:3, 0:48:3, 0] = 1.0  # 256 peaks of each keypoint, b one cell below a
    heat[1:49:3, 0:48:3, 1] = 1.0
    paf = np.zeros((49, 49, 2), np.float32)
    paf[..., 1] = 1.0  # a -> b points down everywhere
    cfg = DecoderConfig(max_peaks=1024, max_persons=10000, refine="none", nms_radius=1, min_parts=min_parts,
                        min_person_score=0.0)
    cpp = cpp_decode()(heat, paf, heatmap_stride=1, topology=topo, config=cfg)
    ref = decode_reference(heat, paf, heatmap_stride=1, topology=topo, config=cfg)
    pairs = int(np.sum(cpp.visible.sum(axis=1) == 2))
    assert pairs == MAX_LIMB_PEAKS
    assert len(cpp) == (MAX_LIMB_PEAKS if min_parts == 2 else 2 * 256 - MAX_LIMB_PEAKS)
    assert cpp.allclose(ref, atol=1e-6), cpp.diff(ref, atol=1e-6)
