"""The C++ decoder on real network outputs: plausible people, layout/dtype/stride invariances,
batches, threads and the GIL."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgepose import BODYPOSENET, DecoderConfig, Poses
from edgepose.config import ASSEMBLY_ORDERS, LIMB_SCORE_MODES, MATCHING_MODES, PERSON_SCORE_MODES, REFINE_MODES
from edgepose.decode import Decoder, decode
from edgepose.topology import coco17_to_topology

MODELS = ("tfpose_mobilenet_thin", "tfpose_mobilenet_v2_small", "omz_human_pose_estimation_0001")
INPUT_W, INPUT_H = 552, 368  # the golden maps' network input (46 x 69 cells at stride 8)
IMAGE_ID = 196141


def nhwc(maps):
    """The golden maps of one model as NHWC float32 batches."""
    h, p, layout = maps
    if layout == "NCHW":
        h, p = h.transpose(0, 2, 3, 1), p.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(h), np.ascontiguousarray(p)


def same(a: Poses, b: Poses, atol: float = 0.0) -> None:
    assert a.allclose(b, atol=atol), a.diff(b, atol=atol)


@pytest.fixture(scope="module")
def gt_people(coco_annotations) -> np.ndarray:
    """The labelled people (>= 10 keypoints) of the golden image, in network-input pixels (M, 18, 3)."""
    image = next(im for im in coco_annotations["images"] if im["id"] == IMAGE_ID)
    anns = [a for a in coco_annotations["annotations"]
            if a["image_id"] == IMAGE_ID and not a.get("iscrowd") and a["num_keypoints"] >= 10]
    kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
    kp[:, :, 0] *= INPUT_W / image["width"]
    kp[:, :, 1] *= INPUT_H / image["height"]
    return coco17_to_topology(kp)


@pytest.mark.parametrize("model", MODELS)
def test_golden_maps_give_the_labelled_people(golden_maps, gt_people, model):
    h, p, layout = golden_maps[model]
    (poses,) = decode(h, p, heatmap_stride=8, layout=layout)
    assert isinstance(poses, Poses)
    inside = (poses.xy[:, :, 0] >= 0) & (poses.xy[:, :, 0] < INPUT_W) & (poses.xy[:, :, 1] >= 0) & (
        poses.xy[:, :, 1] < INPUT_H)
    assert np.all(inside | ~poses.visible), "a keypoint lies outside the input image"
    full = int(np.sum(poses.visible.sum(axis=1) >= 8))
    assert full >= 3, f"{model}: only {full} persons with >= 8 parts"
    assert np.all(np.diff(poses.scores) <= 0), "persons not ordered by score"
    # Every labelled person (>= 10 keypoints) is found: some decoded person's shared keypoints lie
    # within 12 px of the labels (median: the weakest model, v2_small, attaches one wrong leg to one
    # person), and the decoded persons are not all the same one.
    matched = []
    for gt in gt_people:
        best, best_d = -1, np.inf
        for i, kp in enumerate(poses.keypoints):
            both = (gt[:, 2] > 0) & (kp[:, 2] > 0)
            if both.sum() < 5:
                continue
            d = float(np.median(np.linalg.norm(kp[both, :2] - gt[both, :2], axis=1)))
            if d < best_d:
                best, best_d = i, d
        assert best_d < 12.0, f"{model}: labelled person not found (closest median distance {best_d:.1f} px)"
        matched.append(best)
    assert len(set(matched)) == len(gt_people), f"{model}: two labelled people matched one decoded person"


@pytest.mark.parametrize("model", MODELS)
def test_nchw_equals_nhwc(golden_maps, model):
    h, p = nhwc(golden_maps[model])
    dec = Decoder()
    a = dec.decode(h, p, heatmap_stride=8)
    b = dec.decode(np.ascontiguousarray(h.transpose(0, 3, 1, 2)), np.ascontiguousarray(p.transpose(0, 3, 1, 2)),
                   heatmap_stride=8, layout="NCHW")
    # A transposed *view* (NCHW strides over NHWC memory) as well as a real NCHW copy.
    c = dec.decode(h.transpose(0, 3, 1, 2), p.transpose(0, 3, 1, 2), heatmap_stride=8, layout="NCHW")
    assert len(a[0]) >= 3
    same(a[0], b[0])
    same(a[0], c[0])


@pytest.mark.parametrize("model", MODELS)
def test_float16_close_to_float32(golden_maps, model):
    h, p = nhwc(golden_maps[model])
    a = decode(h[0], p[0], heatmap_stride=8)
    b = decode(h[0].astype(np.float16), p[0].astype(np.float16), heatmap_stride=8)
    assert len(a) >= 3 and len(a) == len(b)
    assert np.array_equal(a.visible, b.visible)
    # float16 keeps ~3 significant digits; the sub-pixel fit on a flat peak can move by a
    # fraction of a cell (8 px), typical keypoints by far less.
    err = np.abs(a.keypoints - b.keypoints)[a.visible]
    assert np.max(err[:, :2]) < 2.0 and np.mean(err[:, :2]) < 0.1 and np.max(err[:, 2]) < 1e-3
    np.testing.assert_allclose(a.scores, b.scores, atol=0.01)


def test_other_dtypes_are_converted(golden_maps):
    h, p = nhwc(golden_maps["tfpose_mobilenet_thin"])
    want = decode(h[0], p[0], heatmap_stride=8)
    same(decode(h[0].astype(np.float64), p[0].astype(np.float64), heatmap_stride=8), want)
    # Integer maps work too (all zero -> nobody).
    assert len(decode(np.zeros((4, 5, 19), np.int64), np.zeros((4, 5, 38), np.uint8), heatmap_stride=8)) == 0


def test_batch_equals_per_image(golden_maps):
    maps = [nhwc(golden_maps[m]) for m in MODELS]
    h = np.concatenate([m[0] for m in maps])
    p = np.concatenate([m[1] for m in maps])
    dec = Decoder()
    batch = dec.decode(h, p, heatmap_stride=8)
    assert isinstance(batch, list) and len(batch) == len(MODELS)
    for i in range(len(MODELS)):
        same(batch[i], dec.decode(h[i], p[i], heatmap_stride=8))


def test_non_contiguous_view_equals_contiguous(golden_maps):
    h, p = nhwc(golden_maps["omz_human_pose_estimation_0001"])
    # Embed the maps in bigger arrays and decode strided views of them.
    hb = np.zeros((1, 46 * 2, 69 * 3, 19 * 2), np.float32)
    pb = np.zeros((2, 46, 69 * 2, 38 + 5), np.float32)
    hb[:, ::2, ::3, ::2] = h
    pb[1:, :, ::2, 2:40] = p
    hv, pv = hb[:, ::2, ::3, ::2], pb[1:, :, ::2, 2:40]
    assert not hv.flags.c_contiguous and not pv.flags.c_contiguous
    dec = Decoder()
    same(dec.decode(hv, pv, heatmap_stride=8)[0], dec.decode(h, p, heatmap_stride=8)[0])
    # Negative strides: maps flipped left-right (a view; PAF x negated) decode to the same persons
    # with x mirrored about the input's width, x -> W - 1 - x (section 0 of docs/decoder.md).
    a = dec.decode(h[0], p[0], heatmap_stride=8)
    assert len(a) >= 3
    flipped_paf = p[0, :, ::-1].copy()
    flipped_paf[:, :, 0::2] *= -1
    b = dec.decode(h[0, :, ::-1], flipped_paf, heatmap_stride=8)
    mirrored = a.keypoints.copy()
    mirrored[a.visible, 0] = INPUT_W - 1 - mirrored[a.visible, 0]
    assert b.allclose(Poses(mirrored, a.scores), atol=1e-3), b.diff(Poses(mirrored, a.scores), atol=1e-3)
    # What a network gives for a mirrored image: also left and right swapped (heatmap channels by
    # flip_pairs, each limb's PAF moved to its mirror limb). The persons are the mirrored ones, each
    # keypoint in its mirror slot.
    perm = list(range(BODYPOSENET.num_keypoints + 1))  # the background channel stays
    for left, right in BODYPOSENET.flip_pairs:
        perm[left], perm[right] = right, left
    heat_m = h[0, :, ::-1][:, :, perm]
    paf_m = np.zeros_like(p[0])
    for k, (ka, kb) in enumerate(BODYPOSENET.limbs):
        mirror = BODYPOSENET.limbs.index((perm[ka], perm[kb]))
        (cx, cy), (mx, my) = BODYPOSENET.paf_channels[k], BODYPOSENET.paf_channels[mirror]
        paf_m[:, :, mx], paf_m[:, :, my] = -p[0, :, ::-1, cx], p[0, :, ::-1, cy]
    c = dec.decode(heat_m, paf_m, heatmap_stride=8)
    want = Poses(mirrored[:, perm[:-1]], a.scores)
    assert c.allclose(want, atol=1e-3), c.diff(want, atol=1e-3)


def test_paf_stride_2(golden_maps):
    """Heatmap stride 8 + PAF stride 2 (BodyPoseNet's shape): a 4x nearest upsampled PAF gives
    the same persons, keypoints within 0.5 px."""
    h, p = nhwc(golden_maps["tfpose_mobilenet_thin"])
    p4 = p.repeat(4, axis=1).repeat(4, axis=2)
    dec = Decoder()
    a = dec.decode(h, p, heatmap_stride=8)[0]
    b = dec.decode(h, p4, heatmap_stride=8, paf_stride=2)[0]
    assert len(a) >= 3 and len(a) == len(b)
    assert np.array_equal(a.visible, b.visible)
    assert np.max(np.abs(a.keypoints - b.keypoints)) <= 0.5


def test_parallel_decoders_match_serial(golden_maps):
    jobs = [nhwc(golden_maps[m]) for m in MODELS] * 4
    serial = [Decoder().decode(h, p, heatmap_stride=8)[0] for h, p in jobs]
    results: list = [None] * len(jobs)

    def work(lo: int) -> None:
        dec = Decoder()  # one per thread
        for _ in range(20):
            for i in range(lo, len(jobs), 2):
                results[i] = dec.decode(*jobs[i], heatmap_stride=8)[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results):
        same(a, b)


def test_shared_decoder_across_threads_is_serialised(golden_maps):
    h, p = nhwc(golden_maps["tfpose_mobilenet_thin"])
    dec = Decoder()
    want = dec.decode(h, p, heatmap_stride=8)[0]
    got: list = []

    def work() -> None:
        for _ in range(50):
            got.append(dec.decode(h, p, heatmap_stride=8)[0])

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 150
    for g in got:
        same(want, g)


def test_gil_is_released(golden_maps):
    """A second Python thread keeps running while one long batch decodes."""
    h, p = nhwc(golden_maps["tfpose_mobilenet_thin"])
    dec = Decoder()
    t0 = time.perf_counter()
    dec.decode(np.broadcast_to(h, (50,) + h.shape[1:]), np.broadcast_to(p, (50,) + p.shape[1:]), heatmap_stride=8)
    per_image = (time.perf_counter() - t0) / 50
    batch = int(min(max(0.4 / per_image, 50), 200_000))  # a call of about 0.4 s
    hb, pb = np.broadcast_to(h, (batch,) + h.shape[1:]), np.broadcast_to(p, (batch,) + p.shape[1:])

    done = threading.Event()
    call_time: list = []
    errors: list = []

    def decode_batch() -> None:
        try:
            t = time.perf_counter()
            out = dec.decode(hb, pb, heatmap_stride=8)
            call_time.append(time.perf_counter() - t)
            if len(out) != batch:
                errors.append(f"{len(out)} results for a batch of {batch}")
        except BaseException as e:  # reported below: a raising decode must not hang this test
            errors.append(e)
        finally:
            done.set()

    worker = threading.Thread(target=decode_batch, daemon=True)
    give_up = time.perf_counter() + 120.0  # a hang guard, not a speed limit (the call takes ~0.4 s)
    longest_pause, last = 0.0, time.perf_counter()
    worker.start()
    while not done.is_set() and last < give_up:
        now = time.perf_counter()
        longest_pause, last = max(longest_pause, now - last), now
    longest_pause = max(longest_pause, time.perf_counter() - last)  # the loop may not have run at all
    worker.join(timeout=10.0)
    assert done.is_set() and not worker.is_alive(), "the decode call did not return within 120 s"
    assert not errors, errors[0]
    # With the GIL held for the whole call this thread would stall for all of it; released,
    # its longest pause is about one interpreter switch interval.
    assert call_time[0] > 0.1
    assert longest_pause < 0.5 * call_time[0], (longest_pause, call_time[0])


def _configs():
    base = DecoderConfig()
    yield base
    yield DecoderConfig.tao()
    yield DecoderConfig.ideal()
    for name, choices in (("refine", REFINE_MODES), ("limb_score", LIMB_SCORE_MODES), ("matching", MATCHING_MODES),
                          ("assembly_order", ASSEMBLY_ORDERS), ("person_score", PERSON_SCORE_MODES)):
        for c in choices:
            yield base.replace(**{name: c})
    yield base.replace(paf_sample_step=1.0, max_paf_samples=40)
    yield base.replace(length_prior=0.5, peak_score_weight=0.1, merge=False)
    yield base.replace(nms_radius=0, max_peaks=3, max_persons=2, min_parts=1, min_person_score=0.0)
    yield base.replace(nms_radius=3, min_limb_score=-1.0, min_sample_fraction=0.0, paf_threshold=-0.5)


@pytest.mark.parametrize("config", list(_configs()), ids=lambda c: repr(c)[14:60])
def test_every_config_option_runs(golden_maps, config):
    h, p, layout = golden_maps["omz_human_pose_estimation_0001"]
    poses = decode(h[0], p[0], heatmap_stride=8, layout=layout, config=config)
    assert len(poses) <= config.max_persons
    assert np.all(np.isfinite(poses.scores)) and np.all(np.diff(poses.scores) <= 0)
    assert np.all(poses.visible.sum(axis=1) >= config.min_parts)
    if config.max_persons >= 4 and config.min_parts <= 4:
        assert len(poses) >= 2, "real maps with four people gave fewer than two persons"


def test_config_options_change_the_result(golden_maps):
    h, p, layout = golden_maps["tfpose_mobilenet_thin"]
    base = decode(h, p, heatmap_stride=8, layout=layout)[0]
    centroid = decode(h, p, heatmap_stride=8, layout=layout, config=DecoderConfig(refine="none"))[0]
    assert len(base) == len(centroid) and not np.allclose(base.keypoints, centroid.keypoints)
    tao = decode(h, p, heatmap_stride=8, layout=layout, config=DecoderConfig.tao())[0]
    assert np.all((tao.scores > 0) & (tao.scores < 1)), "tao scores are 1 - 1/total"


def test_topology_and_repr():
    dec = Decoder(BODYPOSENET)
    assert "bodyposenet18" in repr(dec)
    with pytest.raises(TypeError, match="config"):
        Decoder(BODYPOSENET, config={"peak_threshold": 0.2})
