"""Accuracy mode (edgepose.tta): flip permutation, cell-centre alignment, real flip/unflip, multi-scale runs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need
from conftest import nearest_person_distance as _match

from edgepose.errors import InputError, SpecError
from edgepose.preprocess import transform_for
from edgepose.spec import ModelSpec
from edgepose.topology import BODYPOSENET, Topology, mirror_name
from edgepose.tta import Fusion, _resample, parse_scales, resample_matrix, scaled_spec

OMZ = MODELS / "omz_human_pose_estimation_0001.onnx"
THIN = MODELS / "tfpose_mobilenet_thin.onnx"
PEOPLE = "000000196141.jpg"  # several players, limbs on both sides


# -- the flip permutation ------------------------------------------------------------------------

def test_flip_permutation_is_an_involution_that_swaps_left_and_right() -> None:
    f = BODYPOSENET.flip_permutation()
    kp = np.array(f.keypoints)
    assert (kp[kp] == np.arange(len(kp))).all()  # involution
    names = BODYPOSENET.keypoints
    for i, j in enumerate(f.keypoints):
        a, b = names[i], names[j]
        if a.startswith(("right_", "left_")):
            assert b == a.replace("right_", "@").replace("left_", "right_").replace("@", "left_")
        else:
            assert i == j  # nose, neck
    assert {tuple(sorted(p)) for p in enumerate(f.keypoints) if p[0] != p[1]} == set(BODYPOSENET.flip_pairs)
    limbs = np.array(f.limbs)
    assert (limbs[limbs] == np.arange(len(limbs))).all()
    for k, m in enumerate(f.limbs):  # limb k's mirror joins the mirrored keypoints
        a, b = BODYPOSENET.limbs[k]
        assert BODYPOSENET.limbs[m] == ((kp[a], kp[b]) if f.limb_signs[k] > 0 else (kp[b], kp[a]))
    idx, sign = f.paf_channels(BODYPOSENET.paf_channels)
    assert (idx[idx] == np.arange(len(idx))).all()
    assert (sign[0::2] == -1).all() and (sign[1::2] == 1).all()  # x negated, y kept (no reversed limb here)
    heat = f.heatmap_channels(BODYPOSENET.heatmap_channels)
    assert heat[-1] == BODYPOSENET.num_keypoints  # the background stays


def test_flip_permutation_names_and_errors() -> None:
    assert mirror_name("l_knee") == "r_knee" and mirror_name("right_eye") == "left_eye"
    assert mirror_name("nose") == "nose" and mirror_name("lower_lip") == "lower_lip"
    # A reversed mirror limb flips the PAF direction: a -> l_x mirrors to r_x -> a.
    t = Topology("rev", ("a", "l_x", "r_x"), ((0, 1), (2, 0)), ((0, 1), (2, 3)), (True, True))
    f = t.flip_permutation()
    assert f.limbs == (1, 0) and f.limb_signs == (-1, -1)
    idx, sign = f.paf_channels(t.paf_channels)
    assert list(idx) == [2, 3, 0, 1] and list(sign) == [1, -1, 1, -1]
    with pytest.raises(ValueError, match="no mirror 'r_x'"):
        Topology("lop", ("a", "l_x"), ((0, 1),), ((0, 1),), (True,)).flip_permutation()
    with pytest.raises(ValueError, match="no mirror limb"):
        Topology("one", ("a", "l_x", "r_x"), ((0, 1),), ((0, 1),), (True,)).flip_permutation()


# -- cell-centre alignment on synthetic maps ---------------------------------------------------------

def _render(t, stride, hw, fn, flipped=False, bias=(0.0, 0.0)):
    """A (C=1, h, w) map of a run: ``fn(frame_x, frame_y)`` at each cell centre's frame point."""
    j, i = np.meshgrid(np.arange(hw[1]), np.arange(hw[0]))
    inp = np.stack([(j + 0.5) * stride - 0.5 - bias[0], (i + 0.5) * stride - 0.5 - bias[1]], -1)
    xy = t.to_image(inp)
    if flipped:
        xy[..., 0] = t.frame_size[1] - 1 - xy[..., 0]
    return fn(xy[..., 0], xy[..., 1])[None].astype(np.float32)


@pytest.mark.parametrize("resize", ["height", "letterbox", "stretch"])
@pytest.mark.parametrize("flipped", [False, True])
def test_cell_centre_alignment_is_exact_between_scales(resize: str, flipped: bool) -> None:
    frame = (301, 517)
    spec = ModelSpec.omz_hpe0001().replace(resize=resize, keypoint_offset=(-0.4, 0.7))
    if resize != "height":
        spec = spec.replace(input_size=(256, 320))
    fusion = Fusion(spec, (1.0, 1.5), flip=flipped)
    ref_t = transform_for(frame, spec)
    run_t = transform_for(frame, fusion.specs[1])
    assert run_t.input_size != ref_t.input_size
    ref_hw = tuple(-(-d // 8) for d in ref_t.input_size)
    run_hw = tuple(-(-d // 8) for d in run_t.input_size)
    bias = (0.4, -0.7)  # = -keypoint_offset: where the network draws a point
    # A linear ramp is reproduced exactly by bilinear resampling: the value at each reference cell must
    # be that cell's own frame coordinate (inside the frame, away from the clamped edges).
    ramp = lambda x, y: 3.0 * x - 2.0 * y + 7.0  # noqa: E731
    src = _render(run_t, 8, run_hw, ramp, flipped, bias)  # a mirrored run's cell shows the mirrored point
    out = fusion.align(src, ref_t, run_t, ref_hw, flipped, "heatmap")
    want = _render(ref_t, 8, ref_hw, ramp, bias=bias)
    ch, cw = ref_t.content_size
    inside = np.zeros(ref_hw, bool)
    inside[2:(ch + ref_t.pad_y) // 8 - 2, 2 + ref_t.pad_x // 8:(cw + ref_t.pad_x) // 8 - 2] = True
    np.testing.assert_allclose(out[0][inside], want[0][inside], atol=2e-3)
    # Corner-aligned resizing of the map (first cell on first, last on last) misplaces it.
    if not flipped:
        naive = _resample(src, "NCHW", resample_matrix(ref_hw[0], run_hw[0], (run_hw[0] - 1) / (ref_hw[0] - 1), 0),
                          resample_matrix(ref_hw[1], run_hw[1], (run_hw[1] - 1) / (ref_hw[1] - 1), 0))
        err = np.abs(naive[0][inside] - want[0][inside]).max()
        assert err > 3.0, err  # the ramp rises 3 per frame pixel: over a pixel off


def test_gaussian_peak_keeps_its_input_pixel_position_across_scales() -> None:
    frame = (360, 480)
    spec = ModelSpec.tfpose()  # NHWC, height 368, keypoint offset set
    fusion = Fusion(spec, (1.0, 1.5, 0.75), flip=False)
    ref_t = transform_for(frame, spec)
    ref_hw = tuple(-(-d // 8) for d in ref_t.input_size)
    px, py = 201.3, 143.8  # frame pixels
    bias = tuple(-v for v in spec.keypoint_offset)
    sigma = 30.0  # frame pixels: three to five cells of each grid
    for k in (1, 2):
        run_t = transform_for(frame, fusion.specs[k])
        hw = tuple(-(-d // 8) for d in run_t.input_size)
        g = _render(run_t, 8, hw, lambda x, y: np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma ** 2)), bias=bias)
        out = fusion.align(g[0][..., None], ref_t, run_t, ref_hw, False, "heatmap")[..., 0]  # NHWC map
        # The peak's position: its centroid (a bilinear interpolant keeps a wide peak's centroid; a
        # fit to its maximum would measure the interpolation's kinks), back to frame pixels.
        ii, jj = np.mgrid[:out.shape[0], :out.shape[1]]
        w = out / out.sum()
        inp = np.array([((jj * w).sum() + 0.5) * 8 - 0.5 - bias[0], ((ii * w).sum() + 0.5) * 8 - 0.5 - bias[1]])
        got = ref_t.to_image(inp)
        assert np.hypot(got[0] - px, got[1] - py) < 0.05, (k, got)


def test_scales_are_checked() -> None:
    assert parse_scales("1,1.5") == (1.0, 1.5) and parse_scales(None) == (1.0,) and parse_scales(2) == (2.0,)
    for bad in ("0", "abc", "-1", "1e9", "1,1", "", [], "nan", True):
        with pytest.raises(InputError, match="scale"):
            parse_scales(bad)
    assert scaled_spec(ModelSpec.tfpose(), 1.5).target_height == 552
    assert scaled_spec(ModelSpec.bodyposenet(), 1.5).input_size == (432, 576)


# -- real model maps -----------------------------------------------------------------------------------


def test_unflipped_maps_of_the_mirror_image_find_the_same_persons() -> None:
    from edgepose import EdgePose

    frame = cv2.imread(str(need(COCO_MINI / "images" / PEOPLE)))
    with EdgePose(need(OMZ), backend="onnxruntime", threads=2) as model:
        fusion = Fusion(model.spec, (1.0,), flip=True)
        heat, paf, (t,) = model.run_maps(frame)
        mheat, mpaf, (mt,) = model.run_maps(np.ascontiguousarray(frame[:, ::-1]))
        plain = model._decode(heat, paf, [t])[0]
        uh, up = fusion.unflip_channels(mheat, mpaf)
        hw, pw = heat.shape[2:], paf.shape[2:]
        back = model._decode(fusion.align(uh[0], t, mt, hw, True, "heatmap")[None],
                             fusion.align(up[0], t, mt, pw, True, "paf")[None], [t])[0]
        # Without the channel swap, left and right are exchanged: the same positions, wrong labels.
        wrong = model._decode(fusion.align(mheat[0], t, mt, hw, True, "heatmap")[None],
                              fusion.align(mpaf[0] * fusion._paf_sign[:, None, None], t, mt, pw, True, "paf")[None],
                              [t])[0]
    assert len(plain) >= 3 and abs(len(back) - len(plain)) <= 1
    d = _match(plain, back)
    assert np.median(d) < 2.5 and (d < 6).mean() >= 0.75, d
    assert np.median(_match(plain, wrong)) > 2 * np.median(d)


@pytest.mark.parametrize("model_path,kw", [(OMZ, {"scales": (1.0, 1.5), "flip": True}),
                                           (THIN, {"scales": "1,1.5"})])
def test_multi_scale_eval_on_a_few_images_finds_the_people(model_path, kw, coco_annotations) -> None:
    pytest.importorskip("pycocotools")
    from edgepose import EdgePose, coco

    images = [im for im in coco_annotations["images"] if im["file_name"] in (PEOPLE, "000000000790.jpg",
                                                                            "000000197388.jpg")]
    assert len(images) == 3
    with EdgePose(need(model_path), backend="onnxruntime", threads=2, **kw) as model:
        assert model.scales == (1.0, 1.5) and model.flip == kw.get("flip", False)
        results, found = [], 0
        for im in images:
            poses = model.infer(cv2.imread(str(COCO_MINI / "images" / im["file_name"])))
            found += len(poses)
            results += coco.poses_to_results(poses, im["id"])
        assert model.last_timings["inference"] > 0
    people = sum(1 for a in coco_annotations["annotations"] if a["image_id"] in {im["id"] for im in images}
                 and a.get("num_keypoints", 0) > 0)
    assert found >= 0.75 * people, (found, people)
    ap = coco.evaluate(results, coco_annotations, image_ids=[im["id"] for im in images])["AP"]
    assert ap > 0.3, ap


def test_scales_need_a_model_of_dynamic_size_and_flip_a_mirrorable_topology(tmp_path) -> None:
    from edgepose.tta import check_model_scales

    with pytest.raises(SpecError, match="fixed"):
        check_model_scales((1.0, 1.5), (1, 3, 256, 456), "NCHW")
    check_model_scales((1.0,), (1, 3, 256, 456), "NCHW")  # flip alone runs at the model's size
    check_model_scales((1.0, 2.0), ("batch", 3, "height", "width"), "NCHW")
    lop = Topology("lop", ("a", "l_x"), ((0, 1),), ((0, 1),), (True,))
    with pytest.raises(SpecError, match="flip: .*no mirror"):
        Fusion(ModelSpec.tfpose().replace(topology=lop), (1.0,), flip=True)


def test_convert_computes_one_engine_profile_per_scale() -> None:
    from edgepose.formats.engine import BuildOptions, scale_profiles

    shape = ("batch", 3, "height", "width")
    profiles = scale_profiles("image", shape, (1, 1, 4), (368, 432), "NCHW", (1.0, 1.5), flip=True)
    assert [(p.min, p.opt, p.max) for p in profiles] == [
        ((1, 3, 368, 432), (2, 3, 368, 432), (8, 3, 368, 432)),
        ((1, 3, 552, 648), (2, 3, 552, 648), (8, 3, 552, 648))]  # the sizes EdgePose(scales=...) feeds
    spec = ModelSpec.omz_hpe0001().replace(input_size=(368, 432))
    assert scaled_spec(spec, 1.5).input_size == profiles[1].opt[2:]
    groups = BuildOptions("fp16", tuple(profiles)).optimisation_profiles()
    assert [g["image"] for g in groups] == profiles  # one TensorRT optimisation profile each
    nhwc = scale_profiles("x", ("b", "h", "w", 3), (1, 1, 1), (256, 320), "NHWC", (1.0, 0.5))
    assert [p.opt for p in nhwc] == [(1, 256, 320, 3), (1, 128, 160, 3)]


def test_cli_scales_flags_parse_and_refuse_bad_values(capsys) -> None:
    from edgepose.cli import build_parser, main

    args = build_parser().parse_args(["eval", "-m", "m.onnx", "--images", ".", "--annotations", "a.json",
                                      "--scales", "1,1.5", "--flip"])
    assert args.scales == (1.0, 1.5) and args.flip
    args = build_parser().parse_args(["infer", "x.jpg", "-m", "m.onnx"])
    assert args.scales is None and not args.flip
    for command in (["infer", "x.jpg", "-m", "m.onnx"], ["eval", "-m", "m.onnx", "--images", ".", "--annotations",
                                                          "a.json"], ["bench", "-m", "m.onnx"]):
        for bad in ("0", "abc", "-1", "1e9", "1,1", ""):
            assert main([*command, "--scales", bad]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "--scales" in err[0] and "scale" in err[0].split("--scales", 1)[1], err
