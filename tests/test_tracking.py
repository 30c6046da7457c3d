"""PoseTracker and the One Euro filter on real decoded persons moved frame to frame.

The persons are the OMZ model's own output on a coco_mini image (golden maps, decoded), placed on
paths that cross in a 1280x720 frame with ``Poses.translate``-style shifts, keypoint noise and
dropouts, an occlusion (the person behind is not detected while the paths overlap) and fragments
(a few keypoints of a person at a low score). Ground truth is which source person each detection is.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need

from edgepose import InputError, Poses, decode
from edgepose.topology import BODYPOSENET, Topology
from edgepose.tracking import OneEuroFilter, PoseTracker, keypoint_sigmas

FPS = 30.0


@pytest.fixture(scope="module")
def persons(golden_maps) -> Poses:
    """The 4 real persons of the golden image, each centred on (0, 0) (its keypoint box centre) and
    scaled to a keypoint box 200 px high, as in a 720p video."""
    h, p, layout = golden_maps["omz_human_pose_estimation_0001"]
    (poses,) = decode(h, p, heatmap_stride=8, layout=layout)
    assert len(poses) == 4 and (poses.visible.sum(axis=1) >= 15).all()
    kp = poses.keypoints.copy()
    centre = (poses.boxes[:, :2] + poses.boxes[:, 2:]) / 2
    for i in range(len(kp)):
        kp[i, poses.visible[i], :2] -= centre[i]
        kp[i, poses.visible[i], :2] *= 200.0 / (poses.boxes[i, 3] - poses.boxes[i, 1])
    return Poses(kp, poses.scores)


def _paths(frames: int) -> np.ndarray:
    """(4, frames, 2) box centres: 0 and 1 cross head-on along one line, 2 and 3 cross diagonally;
    about 200 px/s (a walk, one body height per second)."""
    a = np.linspace(0.0, 1.0, frames)[:, None]
    lines = [((340, 360), (940, 360)), ((940, 365), (340, 365)), ((400, 200), (880, 520)), ((880, 200), (400, 520))]
    return np.stack([np.array(p0) * (1 - a) + np.array(p1) * a for p0, p1 in lines])


def _sequence(persons: Poses, frames: int = 90, seed: int = 0, noise: float = 1.5, occlude: bool = True,
              fragments: bool = True, hidden=None):
    """[(Poses, truth (M,) source person or -1 for a fragment)] per frame."""
    rng = np.random.default_rng(seed)
    paths = _paths(frames)
    out = []
    for f in range(frames):
        kps, truth, scores = [], [], []
        for i in range(len(persons)):
            if occlude and i == 1 and abs(paths[0, f, 0] - paths[1, f, 0]) < 70:
                continue  # 1 walks behind 0: not detected while they overlap
            if hidden is not None and i in hidden and f in hidden[i]:
                continue
            kp = persons.translate(*paths[i, f])[i].keypoints[0].copy()
            vis = kp[:, 2] > 0
            kp[vis, :2] += rng.normal(0.0, noise, (int(vis.sum()), 2)).astype(np.float32)
            kp[rng.random(18) < 0.08] = 0.0  # keypoint dropouts
            kps.append(kp), truth.append(i), scores.append(float(persons.scores[i]))
            if fragments and f % 4 == i:  # a 3-keypoint fragment of this person, off by a few px
                frag = np.zeros_like(kp)
                pick = np.flatnonzero(kp[:, 2] > 0)[:3]
                frag[pick] = kp[pick]
                frag[pick, :2] += rng.normal(0.0, 6.0, (len(pick), 2))
                kps.append(frag), truth.append(-1), scores.append(0.2)
        order = np.argsort(-np.array(scores), kind="stable")  # the decoder's order: best first
        kp = np.array(kps, np.float32)[order].reshape(-1, 18, 3)
        out.append((Poses(kp, np.array(scores, np.float32)[order]), np.array(truth)[order]))
    return out


def _run(tracker: PoseTracker, seq):
    outs = [tracker.update(p, timestamp=f / FPS) for f, (p, _) in enumerate(seq)]
    return outs, [truth for _, truth in seq]


def _ids_per_person(outs, truths):
    per = {}
    for out, truth in zip(outs, truths):
        for i, g in zip(out.ids.tolist(), truth.tolist()):
            per.setdefault(g, []).append(i)
    return per


def _switches(ids):
    seen = [i for i in ids if i >= 0]
    return sum(a != b for a, b in zip(seen, seen[1:]))


def test_crossing_persons_keep_their_ids_through_an_occlusion(persons):
    seq = _sequence(persons)
    hidden_frames = sum(1 not in truth.tolist() for _, truth in seq)
    assert 8 <= hidden_frames <= 30, "the occlusion must be real and shorter than the lost-track buffer"
    outs, truths = _run(PoseTracker(), seq)
    per = _ids_per_person(outs, truths)
    for g in range(4):
        tracked = [i for i in per[g] if i >= 0]
        assert _switches(per[g]) == 0, f"person {g} changed id: {per[g]}"
        assert len(tracked) >= len(per[g]) - 2, f"person {g} went untracked: {per[g]}"
    assert len({per[g][-1] for g in range(4)}) == 4, "two persons share an id"
    assert all(i == -1 for i in per[-1]), "a fragment got an id"
    # The occluded person comes back under its own id, the first one it had.
    assert per[1][-1] == per[1][0] and per[0][-1] == per[0][0]


def test_same_input_gives_same_ids_and_smoothing_does_not_change_them(persons):
    seq = _sequence(persons, seed=3)
    a, _ = _run(PoseTracker(), seq)
    b, _ = _run(PoseTracker(), seq)
    c, _ = _run(PoseTracker(smooth=True), seq)
    assert all(np.array_equal(x.ids, y.ids) for x, y in zip(a, b))
    assert all(np.array_equal(x.ids, y.ids) for x, y in zip(a, c))
    assert all(np.array_equal(x.keypoints, y.keypoints) for x, y in zip(a, b)), "without smoothing: untouched"


def test_fragments_neither_start_nor_steal_tracks(persons):
    frags = []
    for f in range(20):
        kp = persons.translate(400 + 3 * f, 300)[2].keypoints.copy()
        kp[0, 4:] = 0  # 4 keypoints: a fragment, even with a whole person's score
        frags.append(Poses(kp, np.array([0.9], np.float32)))
    tracker = PoseTracker()
    assert all(tracker.update(p).ids.tolist() == [-1] for p in frags)
    assert len(tracker.track_ids) == 0
    # A fragment lying on a tracked person, ranked first, does not take its id.
    tracker = PoseTracker()
    whole = [persons.translate(400 + 3 * f, 300)[2] for f in range(10)]
    for p in whole[:5]:
        assert tracker.update(p).ids.tolist() == [1]
    for p in whole[5:]:
        frag = p.keypoints.copy()
        frag[0, 3:] = 0
        both = Poses(np.concatenate([frag, p.keypoints]), np.array([0.3, 0.9], np.float32))
        assert tracker.update(both).ids.tolist() == [-1, 1]


def test_lost_buffer_then_a_new_id_never_reused(persons):
    one = persons[3]
    tracker = PoseTracker(max_lost=10)
    seen = set()
    for f in range(5):
        seen.update(tracker.update(one.translate(500 + 2 * f, 300)).ids.tolist())
    assert seen == {1}
    for _ in range(8):  # within the buffer: same id when it returns
        tracker.update(Poses.empty())
    assert tracker.track_ids.tolist() == [1]
    assert tracker.update(one.translate(500 + 2 * 14, 300)).ids.tolist() == [1]
    for _ in range(11):  # past the buffer: forgotten
        tracker.update(Poses.empty())
    assert tracker.track_ids.tolist() == []
    back = [tracker.update(one.translate(530, 300)).ids[0] for _ in range(3)]
    assert back[0] == -1 and back[1] == back[2] == 2, "a tentative track, then a new id (1 is not reused)"
    tracker.reset()
    assert tracker.frame_count == 0 and len(tracker.track_ids) == 0
    assert tracker.update(one).ids.tolist() == [3], "ids keep counting after reset"


def test_bad_input_is_an_input_error_and_changes_nothing(persons):
    tracker = PoseTracker()
    first = tracker.update(persons, timestamp=1.0)
    for bad in (1.0, 0.5, float("nan"), float("inf"), "soon"):
        with pytest.raises(InputError, match="timestamp"):
            tracker.update(persons, timestamp=bad)
    assert tracker.frame_count == 1
    again = tracker.update(persons.translate(2, 1), timestamp=1.04)
    assert np.array_equal(again.ids, first.ids) and (first.ids >= 1).all()
    with pytest.raises(InputError, match="Poses"):
        tracker.update(persons.keypoints)
    other = Topology("two", ("a", "b"), ((0, 1),), ((0, 1),), (True,))
    with pytest.raises(InputError, match="topology"):
        tracker.update(Poses(np.ones((1, 2, 3), np.float32), np.ones(1, np.float32), other))
    # Empty frames, a person without keypoints, non-finite coordinates and scores: no crash.
    assert tracker.update(Poses.empty()).ids.shape == (0,)
    kp = persons.translate(4, 2).keypoints.copy()
    kp[1] = 0
    kp[2, 0, :2] = np.nan
    scores = persons.scores.copy()
    scores[3] = np.nan
    out = tracker.update(Poses(kp, scores))
    assert out.ids[1] == -1 and out.ids[0] == first.ids[0] and out.ids[2] == first.ids[2]
    assert out.ids[3] == -1, "a NaN score is no score"
    with pytest.raises(ValueError, match="max_lost"):
        PoseTracker(max_lost=-1)
    with pytest.raises(ValueError, match="match_threshold"):
        PoseTracker(match_threshold=0)


def test_timestamps_default_to_fps_and_drive_the_motion_model(persons):
    # A person moving 6 px per frame, with every other frame dropped: with the right timestamps the
    # prediction follows; fed as consecutive frames (no timestamps) the id must still hold.
    one = persons[0]
    for use_times in (True, False):
        tracker = PoseTracker()
        ids = []
        for f in range(0, 60, 2):
            t = f / FPS if use_times else None
            ids.append(int(tracker.update(one.translate(300 + 6 * f, 300), timestamp=t).ids[0]))
        assert set(ids) == {1}
    assert PoseTracker(fps=10)._timestamp(None) == 0.0


def _jitter(track):
    """Mean norm of the second difference of (T, N, 2) positions over keypoints found in 3 frames."""
    d2 = track[2:] - 2 * track[1:-1] + track[:-2]
    return float(np.linalg.norm(d2, axis=2).mean())


def test_one_euro_reduces_jitter_on_noisy_real_keypoints(persons):
    rng = np.random.default_rng(7)
    one = persons[2]
    vis = one.visible[0]
    truth, raw, smooth = [], [], []
    tracker = PoseTracker(smooth=True)
    for f in range(120):
        clean = one.translate(300 + 1.5 * f, 300)  # a slow walk: 45 px/s
        noisy = clean.keypoints.copy()
        noisy[0, vis, :2] += rng.normal(0.0, 2.0, (int(vis.sum()), 2))
        out = tracker.update(Poses(noisy, one.scores), timestamp=f / FPS)
        assert out.ids.tolist() == [1]
        truth.append(clean.xy[0, vis]), raw.append(noisy[0, vis, :2]), smooth.append(out.xy[0, vis])
    truth, raw, smooth = (np.array(a, np.float64)[20:] for a in (truth, raw, smooth))
    raw_err, smooth_err = raw - truth, smooth - truth
    assert _jitter(smooth_err) < 0.5 * _jitter(raw_err)
    assert np.linalg.norm(smooth_err, axis=2).mean() < np.linalg.norm(raw_err, axis=2).mean()
    # Unsmoothed persons (no id yet) are passed through unchanged.
    first = PoseTracker(smooth=True, min_hits=2)
    first.update(Poses.empty())
    out = first.update(one)
    assert out.ids.tolist() == [-1] and np.array_equal(out.keypoints, one.keypoints)


def test_one_euro_follows_a_step_and_missing_keypoints_do_not_drag(persons):
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05, d_cutoff=1.0)
    x, dx = np.zeros((1, 2)), np.zeros((1, 2))
    outs = []
    for _ in range(30):  # a 100 px step, then 1 s at rest
        x, dx = f.step(np.array([[100.0, -50.0]]), x, dx, np.array([1 / FPS]))
        outs.append(x[0].copy())
    outs = np.array(outs)
    assert np.all(np.diff(outs[:, 0]) >= 0) and outs[:, 0].max() <= 100.0, "monotone, no overshoot"
    assert abs(outs[9, 0] - 100.0) < 5.0 and abs(outs[-1, 0] - 100.0) < 0.5
    # Through the tracker: a wrist missing for a frame stays missing and its filter is not moved;
    # after a long gap it restarts exactly at its new measurement.
    one = persons[0]
    wrist = BODYPOSENET.index("right_wrist")
    assert one.visible[0, wrist]
    tracker = PoseTracker(smooth=True, smooth_max_gap=2)
    for k in range(10):
        tracker.update(one.translate(300 + k, 300))
    kp = one.translate(310, 300).keypoints.copy()
    kp[0, wrist] = 0
    out = tracker.update(Poses(kp, one.scores))
    assert out.keypoints[0, wrist].tolist() == [0, 0, 0]
    for _ in range(5):
        out = tracker.update(Poses(kp, one.scores))
    moved = one.translate(320, 340).keypoints.copy()  # the wrist reappears far away after 6 frames
    out = tracker.update(Poses(moved, one.scores))
    assert np.allclose(out.keypoints[0, wrist], moved[0, wrist])


def test_keypoint_sigmas_follow_coco_and_the_neck_takes_the_shoulders():
    s = keypoint_sigmas(BODYPOSENET)
    names = BODYPOSENET.keypoints
    assert s[names.index("nose")] == 0.026 and s[names.index("left_hip")] == 0.107
    assert s[names.index("neck")] == pytest.approx(0.079)
    assert s.shape == (18,)


def test_cxx_keypoint_similarity_is_the_oks_formula(persons):
    from edgepose._decoder import keypoint_similarity

    rng = np.random.default_rng(5)
    pred = np.concatenate([persons.translate(300, 300).xy, persons.translate(310, 290).xy]).astype(np.float64)
    known = np.concatenate([persons.visible, persons.visible & (rng.random((4, 18)) < 0.7)])
    det = (persons.translate(305, 296).xy + rng.normal(0, 3, (4, 18, 2))).astype(np.float64)
    vis = persons.visible & (rng.random((4, 18)) < 0.8)
    inv_var = 1.0 / rng.uniform(20, 900, (8, 18))
    got = keypoint_similarity(pred, known, inv_var, det, vis)
    want = np.zeros((8, 4))
    for t in range(8):
        for m in range(4):
            both = known[t] & vis[m]
            d2 = ((pred[t, both] - det[m, both]) ** 2).sum(axis=1)
            want[t, m] = np.exp(-0.5 * d2 * inv_var[t, both]).mean() if both.any() else 0.0
    assert np.allclose(got, want, rtol=1e-12, atol=1e-15) and want.max() > 0.3
    assert keypoint_similarity(pred[:0], known[:0], inv_var[:0], det, vis).shape == (0, 4)
    with pytest.raises(ValueError, match="det"):
        keypoint_similarity(pred, known, inv_var, det[:, :17], vis[:, :17])
    with pytest.raises(ValueError, match="vis"):
        keypoint_similarity(pred, known, inv_var, det, vis[:3])


def test_cxx_smoothing_is_the_one_euro_filter_step_by_step(persons):
    # One person, noisy, with keypoint dropouts and gaps longer than smooth_max_gap; the tracker's
    # output must equal OneEuroFilter.step applied per keypoint with the documented restart rule.
    rng = np.random.default_rng(11)
    one = persons[1]
    f = OneEuroFilter(min_cutoff=1.0, beta=0.08, d_cutoff=1.0)
    tracker = PoseTracker(smooth=True, smooth_max_gap=2)
    x, dx = np.zeros((18, 2)), np.zeros((18, 2))
    last_t, last_f = np.zeros(18), np.full(18, -100)
    for k in range(60):
        t = k / FPS
        kp = one.translate(400 + 4 * k, 300).keypoints.copy()
        kp[0, :, :2] += rng.normal(0, 2, (18, 2))
        kp[0, rng.random(18) < (0.6 if k % 10 > 6 else 0.05)] = 0.0
        kp[0, one.keypoints[0, :, 2] == 0] = 0.0
        out = tracker.update(Poses(kp, one.scores), timestamp=t)
        assert out.ids.tolist() == [1]
        vis = kp[0, :, 2] > 0
        want = kp[0, :, :2].astype(np.float64)
        for n in np.flatnonzero(vis):
            if (k + 1) - last_f[n] > 3:
                x[n], dx[n] = want[n], 0.0
            else:
                xn, dxn = f.step(want[n][None], x[n][None], dx[n][None], np.array([t - last_t[n]]))
                x[n], dx[n] = xn[0], dxn[0]
            last_t[n], last_f[n] = t, k + 1
            want[n] = x[n]
        assert np.allclose(out.xy[0], want, atol=1e-4), k


# -- the model, the Python API and the command line, on a short video made from a real image -----------

def _shifted_frames(count: int, step: float = 3.0):
    """A coco_mini image with 4 people, 480x320, panned ``step`` px per frame (the persons move)."""
    image = cv2.imread(str(need(COCO_MINI / "images" / "000000000790.jpg")))
    image = cv2.resize(image, (520, 340), interpolation=cv2.INTER_AREA)
    frames = []
    for k in range(count):
        m = np.float32([[1, 0, -k * step], [0, 1, -k * step / 3]])
        frames.append(cv2.warpAffine(image, m, (480, 320), borderMode=cv2.BORDER_REFLECT))
    return frames


@pytest.fixture(scope="module")
def omz_path() -> str:
    pytest.importorskip("onnxruntime", reason="runs the OMZ model with ONNX Runtime")
    return str(need(MODELS / "omz_human_pose_estimation_0001.onnx"))


def test_edgepose_track_gives_stable_ids_over_real_frames(omz_path):
    from edgepose import EdgePose

    frames = _shifted_frames(6)
    with EdgePose(omz_path, threads=2) as model:
        outs = list(model.track(frames, timestamps=[k / 10 for k in range(6)], smooth=True))
        plain = [model.infer(f) for f in frames]
        with pytest.raises(InputError, match="timestamps"):
            list(model.track(frames, timestamps=[0.0, 0.1]))
        tracker = PoseTracker()
        again = list(model.track(frames, tracker=tracker))
    assert [len(o) for o in outs] == [len(p) for p in plain]
    first = {int(i) for i in outs[0].ids if i >= 0}
    assert len(first) >= 2, "several people found and tracked from the first frame"
    for o in outs[1:]:
        assert first <= set(o.ids.tolist()), "an id of the first frame was lost"
    assert tracker.frame_count == 6 and [o.ids.tolist() for o in again] == [o.ids.tolist() for o in outs]


def test_cli_track_writes_ids_and_boxes_and_smooth_implies_track(tmp_path, omz_path):
    from edgepose.cli import main

    video = tmp_path / "pan.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (480, 320))
    for f in _shifted_frames(8):
        writer.write(f)
    writer.release()
    runs = {}
    for flags in (["--track"], ["--smooth"], []):
        js, out = tmp_path / f"p{len(runs)}.jsonl", tmp_path / f"a{len(runs)}.mp4"
        assert main(["infer", str(video), "--model", omz_path, "--json", str(js), "--out", str(out),
                     "--no-progress", *flags]) == 0
        runs[" ".join(flags)] = [json.loads(line) for line in js.read_text().splitlines()]
        cap = cv2.VideoCapture(str(out))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
        cap.release()
    for name in ("--track", "--smooth"):
        records = runs[name]
        assert len(records) == 8
        for r in records:
            for p in r["persons"]:
                assert isinstance(p["id"], int) and len(p["box"]) == 4
                found = np.array([k for k in p["keypoints"] if k[2] > 0])
                assert p["box"] == pytest.approx([*found[:, :2].min(0), *found[:, :2].max(0)], abs=1e-3)
        ids = [{p["id"] for p in r["persons"] if p["id"] >= 0} for r in records]
        assert len(ids[0]) >= 2 and all(ids[0] <= later for later in ids[1:]), ids
    assert all("id" not in p and "box" not in p for r in runs[""] for p in r["persons"])
    # Smoothing changes the keypoints of tracked persons, not which persons there are.
    a, b = runs["--track"][-1]["persons"], runs["--smooth"][-1]["persons"]
    assert [p["id"] for p in a] == [p["id"] for p in b]
    assert any(p["keypoints"] != q["keypoints"] for p, q in zip(a, b))


def test_draw_colours_tracked_persons_by_id_and_writes_the_id(persons):
    from edgepose.draw import draw, id_color

    kp = np.concatenate([persons.translate(300, 300)[0].keypoints, persons.translate(800, 300)[2].keypoints])
    p = Poses(kp, persons.scores[[0, 2]], ids=np.array([7, -1]))
    frame = np.zeros((720, 1280, 3), np.uint8)
    out = draw(frame, p, radius=0, thickness=7)
    neck, hip = BODYPOSENET.index("neck"), BODYPOSENET.index("right_hip")
    mid = ((p.xy[0, neck] + p.xy[0, hip]) / 2).round().astype(int)
    assert tuple(int(v) for v in out[mid[1], mid[0]]) == id_color(7), "the limb takes the id's colour"
    mid2 = ((p.xy[1, neck] + p.xy[1, hip]) / 2).round().astype(int)
    assert tuple(int(v) for v in out[mid2[1], mid2[0]]) == id_color(-1), "no id: grey"
    x1, y1 = p.boxes[0, :2].astype(int)
    label = out[max(y1 - 25, 0):y1 - 2, x1:x1 + 20]
    assert (label == id_color(7)).all(axis=2).any(), "the id is written above the person"
    plain = draw(frame, p.with_ids(None), radius=0, thickness=7)
    assert not np.array_equal(plain, out)
    assert len({id_color(i) for i in range(1, 11)}) == 10


def test_random_and_hostile_frames_never_crash_and_ids_stay_unique(persons):
    # Real persons jumping around, duplicated, cut to fragments, with NaN / inf coordinates and
    # scores, negative scores and empty frames: no exception, an id at most once per frame, ids only grow.
    rng = np.random.default_rng(2)
    tracker = PoseTracker(smooth=True)
    seen_max = 0
    for f in range(300):
        m = int(rng.integers(0, 9))
        pick = rng.integers(0, 4, m)
        kp = persons.keypoints[pick].copy()
        kp[:, :, :2] += rng.uniform(0, 1280, (m, 1, 2)).astype(np.float32)
        kp[rng.random(kp.shape[:2]) < 0.3] = 0.0
        bad = rng.random(kp.shape[:2]) < 0.02
        kp[bad, int(rng.integers(0, 2))] = rng.choice([np.nan, np.inf, -np.inf])
        scores = rng.uniform(-0.2, 1.6, m).astype(np.float32)
        scores[rng.random(m) < 0.05] = np.nan
        out = tracker.update(Poses(kp, scores), timestamp=f / FPS + rng.uniform(0, 0.01))
        ids = out.ids[out.ids >= 0]
        assert len(ids) == len(set(ids.tolist())), f"frame {f}: an id twice: {out.ids}"
        new = ids[ids > seen_max]
        seen_max = max(seen_max, int(ids.max(initial=0)))
        counted = (kp[:, :, 2] > 0) & np.isfinite(kp[:, :, :2]).all(axis=2)
        assert np.isfinite(out.xy[counted]).all(), "a smoothed keypoint became non-finite"
        assert len(out) == m and (len(new) == 0 or new.min() > 0)
    assert seen_max > 4, "the tracker made tracks at all"
