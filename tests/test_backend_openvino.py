"""The OpenVINO backend on the real models: same persons as ONNX Runtime, recorded precision, f32 forcing,
and how ``backend="auto"`` treats it. Skipped where openvino is not installed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need
from conftest import nearest_person_distance as _nearest

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

from edgepose import EdgePose  # noqa: E402
from edgepose.backends import REGISTRY, cpu_has_bf16, create  # noqa: E402
from edgepose.errors import InputError  # noqa: E402

OMZ = MODELS / "omz_human_pose_estimation_0001.onnx"
THIN = MODELS / "tfpose_mobilenet_thin.onnx"
IMAGES = ("000000196141.jpg", "000000000790.jpg", "000000197388.jpg")


def _persons(model_path, backend, **options):
    out = []
    with EdgePose(need(model_path), backend=backend, threads=2, backend_options=options or None) as model:
        for name in IMAGES:
            out.append(model.infer(cv2.imread(str(need(COCO_MINI / "images" / name)))))
        info = model.backend.describe()
    return out, info



@pytest.mark.parametrize("model_path", [OMZ, THIN])  # NCHW and NHWC
def test_openvino_finds_the_persons_onnxruntime_finds(model_path) -> None:
    ort, _ = _persons(model_path, "onnxruntime")
    ov, info = _persons(model_path, "openvino")
    f32, info32 = _persons(model_path, "openvino", precision="f32")
    assert info["backend"] == "openvino" and info["precision"] == ("bf16" if cpu_has_bf16() else "f32")
    assert info32["precision"] == "f32" and info32["requested_precision"] == "f32"
    for a, b, c in zip(ort, ov, f32):
        assert len(a) > 0 and abs(len(a) - len(b)) <= 1 and len(c) == len(a)
        assert np.median(_nearest(a, b)) < 1.5  # bf16: the same persons within a pixel or so
        d = _nearest(a, c)
        assert np.median(d) < 0.05 and (d < 0.5).all(), d  # f32: the same numbers as ONNX Runtime


def test_openvino_runs_any_input_size_with_one_compiled_model() -> None:
    with create(need(OMZ), "openvino", threads=1, precision="f32") as b:
        assert b.describe()["precision"] == "f32" and b.inputs[0].shape == (None, 3, None, None)
        for shape in ((1, 3, 64, 96), (2, 3, 72, 96), (1, 3, 64, 96)):
            y = b.run({"image": np.full(shape, 100, np.float32)})
            want = (shape[0], shape[2] // 8, shape[3] // 8)
            assert y["heatmap"].shape == (want[0], 19, *want[1:]) and y["paf"].shape == (want[0], 38, *want[1:])
        with pytest.raises(ValueError, match="needs 4 axes"):
            b.run({"image": np.zeros((3, 64, 96), np.float32)})
    with create(need(THIN), "openvino") as b:  # the ONNX metadata_props, as ONNX Runtime reports them
        assert b.metadata["output_stride"] == "8" and b.metadata["input_layout"] == "NHWC"
        assert [t.name for t in b.outputs] == ["heatmap", "paf"] and b.inputs[0].shape == (None, None, None, 3)


def test_openvino_options_are_checked() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        create(need(OMZ), "openvino", precision="int3")
    with pytest.raises(InputError, match="takes no option 'providers'"):
        create(need(OMZ), "openvino", providers="cuda")
    with create(need(OMZ), providers="cpu") as b:  # auto with an ONNX Runtime option: ONNX Runtime
        assert b.name == "onnxruntime" and "providers" in b.describe()["selection"]["skipped"]["openvino"]
    with pytest.raises(InputError, match="takes no option 'precision'"):
        EdgePose(need(OMZ), backend="onnxruntime", backend_options={"precision": "f32"})


def test_auto_picks_openvino_only_on_a_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgepose.backends as backends

    with create(need(OMZ)) as b:
        sel = b.describe()["selection"]
    if cpu_has_bf16():
        assert sel["chosen"] == "openvino"
    else:
        assert sel["chosen"] == "onnxruntime" and "bf16" in sel["skipped"]["openvino"]
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    with create(need(OMZ)) as b:
        sel = b.describe()["selection"]
    assert sel["chosen"] == "onnxruntime" and "bf16" in sel["skipped"]["openvino"]
    assert REGISTRY["openvino"].can_run()
