"""tools/calibrate.py: a TensorRT calibration cache and a QDQ INT8 model from real images."""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MODEL = DATA / "models" / "tfpose_mobilenet_thin.onnx"
IMAGES = DATA / "coco_mini" / "images"
PEOPLE_IMAGE = IMAGES / "000000196141.jpg"  # several players, found by every model here

pytestmark = pytest.mark.skipif(not (MODEL.is_file() and PEOPLE_IMAGE.is_file()),
                                reason=f"needs {MODEL} and coco_mini images under {DATA}")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("onnxruntime.quantization", reason="the calibrator needs onnxruntime's quantization tools")
calibrate = pytest.importorskip("tools.calibrate")

from edgepose.errors import InputError, ModelFormatError  # noqa: E402
from edgepose.formats.calib import CalibrationCache, read_calibration_cache  # noqa: E402


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    out = tmp_path_factory.mktemp("calib")
    images = sorted(IMAGES.glob("*.jpg"))[:3] + [PEOPLE_IMAGE]
    result = calibrate.calibrate(MODEL, images, cache=out / "v2.txt", int8_onnx=out / "v2.int8.onnx",
                                 trt_version="10.3.0")
    return result


def test_cache_is_tensorrt_text_format(calibrated):
    lines = calibrated.cache.read_text(encoding="ascii").splitlines()
    assert lines[0] == "TRT-10300-EntropyCalibration2"
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
    assert (parsed.version, parsed.algorithm) == (10300, "EntropyCalibration2")
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


def test_qdq_model_runs_and_finds_people(calibrated):
    import cv2
    import onnx

    from edgepose import EdgePose

    ops = {n.op_type for n in onnx.load(str(calibrated.int8_onnx)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    frame = cv2.imread(str(PEOPLE_IMAGE))
    with EdgePose(str(MODEL), backend="onnxruntime") as fp32, \
         EdgePose(str(calibrated.int8_onnx), backend="onnxruntime", spec=fp32.spec) as int8:
        heat32, paf32, _ = fp32.run_maps(frame)
        heat8, paf8, _ = int8.run_maps(frame)
        found32, found8 = len(fp32.infer(frame)), len(int8.infer(frame))
    assert found32 >= 2 and found8 >= 2, (found32, found8)
    assert calibrated.equalized > 0
    # Heatmaps stay close to FP32. The PAFs are what depthwise / pointwise equalisation rescued:
    # without it their correlation with FP32 is ~0.05 on this model, with it ~0.5 (see docs/tools.md;
    # the INT8 PAFs are still far noisier than the heatmaps, and 0.9 is not reached).
    assert np.corrcoef(heat32.ravel(), heat8.ravel())[0, 1] > 0.95
    assert np.corrcoef(paf32.ravel(), paf8.ravel())[0, 1] > 0.35
    assert np.isfinite(paf8).all() and paf8.shape == paf32.shape


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
