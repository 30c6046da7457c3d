"""Engine precision on TensorRT 10 and 11 (edgepose/formats/precision.py): the build rules, Q/DQ models
checked for TensorRT, and the FP16 conversion TensorRT 11 needs, run here through ONNX Runtime."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need

from edgepose import EdgePose
from edgepose.cli import main
from edgepose.errors import ModelFormatError
from edgepose.formats.precision import BuildPlan, Quantization, check_build, onnx_quantization, plan_build, to_fp16

pytest.importorskip("onnxruntime")
THIN = MODELS / "tfpose_mobilenet_thin.onnx"
PEOPLE = COCO_MINI / "images" / "000000196141.jpg"  # several players
ORT_QDQ = Quantization(12, False, "QuantizeLinear 'x' quantizes to uint8 (ONNX Runtime's CPU format)")
TRT_QDQ = Quantization(12)


@pytest.mark.parametrize("precision, cache, quant, weak, expected", [
    # TensorRT 10: weak typing, builder flags, optional cache.
    ("fp32", None, Quantization(), True, BuildPlan()),
    ("fp16", None, Quantization(), True, BuildPlan(("FP16",))),
    ("int8", "cal.txt", Quantization(), True, BuildPlan(("FP16", "INT8"), calibration_cache="cal.txt")),
    ("int8", None, TRT_QDQ, True, BuildPlan(("FP16", "INT8"))),
    # TensorRT 11+: strongly typed; FP16 by converting the model; INT8 only from Q/DQ.
    ("fp32", None, Quantization(), False, BuildPlan(strongly_typed=True)),
    ("fp16", None, Quantization(), False, BuildPlan(strongly_typed=True, convert_fp16=True)),
    ("int8", None, TRT_QDQ, False, BuildPlan(strongly_typed=True)),
])
def test_build_plans(precision: str, cache: str, quant: Quantization, weak: bool, expected: BuildPlan) -> None:
    assert plan_build(precision, cache, quant, weak_typing=weak) == expected


@pytest.mark.parametrize("precision, cache, quant, weak, message", [
    ("int8", "cal.txt", Quantization(), False, "TensorRT 11.4.0 removed INT8 calibration caches"),
    ("int8", None, Quantization(), True, "int8 needs a calibration cache .* or a Q/DQ INT8 model"),
    ("int8", None, Quantization(), False, "int8 needs a calibration cache"),
    ("int8", None, ORT_QDQ, True, "quantized for ONNX Runtime, not for TensorRT: .*uint8"),
    ("fp16", None, TRT_QDQ, True, "already quantized .* build it with -t int8"),
    ("int8", "cal.txt", TRT_QDQ, True, "already quantized .* drop --calib"),
])
def test_build_refusals_name_the_problem(precision: str, cache: str, quant: Quantization, weak: bool,
                                         message: str) -> None:
    with pytest.raises(ModelFormatError, match=message):
        plan_build(precision, cache, quant, weak_typing=weak, trt_version="11.4.0", where="m.onnx")


def test_quantization_of_real_models(tmp_path: Path) -> None:
    """A float model has no Q/DQ; ONNX Runtime's QDQ (uint8 activations) is not TensorRT's."""
    assert onnx_quantization(need(THIN).read_bytes()) == Quantization()
    with pytest.raises(ModelFormatError, match="m.onnx: not a valid ONNX model"):
        onnx_quantization(need(THIN).read_bytes()[:5000], "m.onnx")
    pytest.importorskip("onnxruntime.quantization")
    from tools import calibrate

    qdq = tmp_path / "thin.int8.onnx"
    calibrate.calibrate(THIN, [need(PEOPLE)], int8_onnx=qdq, method="minmax", input_size=(184, 216))
    quant = onnx_quantization(qdq.read_bytes())
    assert quant.quantized and not quant.tensorrt and "uint8" in quant.problem
    with pytest.raises(ModelFormatError, match="quantized for ONNX Runtime"):
        check_build("int8", None, quant)


def _poses(model: Path, image: np.ndarray) -> np.ndarray:
    with EdgePose(model, input_size=(368, 432)) as m:
        return m.infer(image).keypoints


def test_fp16_conversion_keeps_the_poses(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`edgepose convert -t fp16` (what TensorRT 11 builds FP16 engines from): FP32 inputs and outputs,
    FP16 inside, and the same people as the FP32 model on a real image."""
    pytest.importorskip("onnxconverter_common")
    import onnx

    out = tmp_path / "thin.fp16.onnx"
    assert main(["convert", str(need(THIN)), "-o", str(out), "-t", "fp16"]) == 0
    assert "FP16 with FP32 inputs and outputs" in capsys.readouterr().out
    model = onnx.load(out)
    f16 = onnx.TensorProto.FLOAT16
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    weights = [t for t in model.graph.initializer if t.dims and np.prod(t.dims) > 16]
    assert weights and all(t.data_type == f16 for t in weights)
    assert out.stat().st_size < 0.6 * THIN.stat().st_size  # half-size weights
    image = cv2.imread(str(need(PEOPLE)))
    ref, half = _poses(THIN, image), _poses(out, image)
    assert len(ref) >= 3 and len(half) == len(ref)
    # Same people, keypoints where they were (measured: median shift 0.04 px, largest 3.4 px).
    seen = (ref[:, :, 2] > 0) & (half[:, :, 2] > 0)
    assert seen.sum() >= 0.9 * (ref[:, :, 2] > 0).sum()
    assert np.median(np.abs(ref[seen, :2] - half[seen, :2])) < 0.25
    assert to_fp16(out.read_bytes()) == out.read_bytes()  # already FP16: unchanged, not converted twice


def test_convert_refuses_what_tensorrt_cannot_build(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The model-only rules fail on any machine, before TensorRT is needed."""
    pytest.importorskip("onnxruntime.quantization")
    from tools import calibrate

    qdq = tmp_path / "thin.int8.onnx"
    calibrate.calibrate(THIN, [need(PEOPLE)], int8_onnx=qdq, method="minmax", input_size=(184, 216))
    cases = [
        (["-o", str(tmp_path / "a.engine"), "-t", "int8", "--input-size", "368x432"], "quantized for ONNX Runtime"),
        (["-o", str(tmp_path / "b.onnx"), "-t", "fp16"], "is quantized .*convert the FP32 model"),
    ]
    for argv, message in cases:
        assert main(["convert", str(qdq), *argv]) == 1
        line = capsys.readouterr().err.strip()
        assert re.search(message, line), line
        assert len(line.splitlines()) == 1
