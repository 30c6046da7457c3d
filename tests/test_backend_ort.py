"""The ONNX Runtime backend and the backend registry: golden outputs of the three real models,
model from path or bytes, threads, dynamic batch, fixed shapes, providers, and model formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import GOLDEN, MODELS, need

pytest.importorskip("onnxruntime")

from edgepose.backends import REGISTRY, Backend, available_backends, create  # noqa: E402
from edgepose.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from edgepose.errors import BackendUnavailable, ModelFormatError  # noqa: E402
from edgepose.formats import ModelFormat, detect_format  # noqa: E402

GOLDEN_CASES = [
    ("tfpose_mobilenet_thin", "coco_000000196141_552x368.npz", "NHWC"),
    ("tfpose_mobilenet_v2_small", "coco_000000196141_552x368.npz", "NHWC"),
    ("omz_human_pose_estimation_0001", "coco_000000196141_552x368_omz_hpe0001.npz", "NCHW"),
]


@pytest.mark.parametrize("model,golden,layout", GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_golden_outputs_reproduce(model: str, golden: str, layout: str) -> None:
    data = np.load(need(GOLDEN / golden))
    x = data["input_bgr_u8"].astype(np.float32)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    with create(need(MODELS / f"{model}.onnx"), "onnxruntime", threads=2) as backend:
        assert isinstance(backend, Backend) and backend.name == "onnxruntime"
        out = backend.run({backend.inputs[0].name: x})
    assert set(out) == {"heatmap", "paf"}
    for key in ("heatmap", "paf"):
        want = data[f"{model}__{key}"]
        assert out[key].shape == want.shape and out[key].dtype == np.float32
        np.testing.assert_allclose(out[key], want, rtol=0, atol=1e-4)


def test_bytes_and_path_agree_and_describe() -> None:
    path = need(MODELS / "tfpose_mobilenet_v2_small.onnx")
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    with create(path, "onnxruntime") as a, create(path.read_bytes(), "onnxruntime", threads=1) as b:
        np.testing.assert_array_equal(a.run({"image": x})["paf"], b.run({"image": x})["paf"])
        d = b.describe()
        assert d["backend"] == "onnxruntime" and d["threads"] == 1 and d["providers"] == ["CPUExecutionProvider"]
        assert d["inputs"] == [{"name": "image", "shape": ["batch", "height", "width", 3], "dtype": "float32"}]
        assert [o["name"] for o in d["outputs"]] == ["heatmap", "paf"]
        assert d["metadata"]["output_stride"] == "8"
        assert d["model"] == f"<{path.stat().st_size} bytes>" and a.describe()["model"] == str(path)


def test_dynamic_batch_equals_single_runs() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (2, 3, 64, 80)).astype(np.float32)
    with create(need(MODELS / "omz_human_pose_estimation_0001.onnx"), "onnxruntime", threads=2) as b:
        both = b.run({"image": x})
        for i in range(2):
            one = b.run({"image": x[i: i + 1]})
            np.testing.assert_allclose(both["heatmap"][i], one["heatmap"][0], atol=1e-5)
            np.testing.assert_allclose(both["paf"][i], one["paf"][0], atol=1e-5)


def test_fixed_shape_and_feed_errors() -> None:
    from test_spec import tiny_model

    with create(tiny_model(size=(64, 96), batch=1)) as b:
        assert b.inputs[0].shape == (1, 64, 96, 3) and b.inputs[0].is_static
        ok = b.run({"image": np.zeros((1, 64, 96, 3), np.float64)})  # converted to float32
        assert ok["heatmap"].shape == (1, 8, 12, 19)
        with pytest.raises(ValueError, match=r"'image' has a fixed shape.*axis 2 must be 96"):
            b.run({"image": np.zeros((1, 64, 90, 3), np.float32)})
        with pytest.raises(ValueError, match=r"axis 0 must be 1"):
            b.run({"image": np.zeros((2, 64, 96, 3), np.float32)})
        with pytest.raises(ValueError, match="needs 4 axes"):
            b.run({"image": np.zeros((64, 96, 3), np.float32)})
        with pytest.raises(ValueError, match=r"missing \['image'\].*unknown \['img'\]"):
            b.run({"img": np.zeros((1, 64, 96, 3), np.float32)})
        b.run({"image": np.zeros((1, 64, 96, 3), np.float32)})  # still usable after errors
    with pytest.raises(RuntimeError, match="after close"):
        b.run({"image": np.zeros((1, 64, 96, 3), np.float32)})
    b.close()  # idempotent


def test_providers_are_explicit() -> None:
    import onnxruntime as ort

    path = need(MODELS / "tfpose_mobilenet_v2_small.onnx")
    with create(path, providers="cpu") as b:
        assert b.providers == ["CPUExecutionProvider"]
    for name in ("cuda", "tensorrt"):
        full = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[name]
        if full in ort.get_available_providers():
            continue  # a GPU build: covered by the gpu-marked tests
        with pytest.raises(BackendUnavailable, match=rf"no execution provider '{name}'.*pip install onnxruntime-gpu"):
            create(path, providers=name)
    with pytest.raises(BackendUnavailable, match="no execution provider 'tpu'"):
        create(path, providers=["tpu"])
    with pytest.raises(ValueError, match="threads"):
        create(path, threads=0)


def test_registry_and_unknown_backends() -> None:
    assert "onnxruntime" in REGISTRY and available_backends()["onnxruntime"] is True
    path = need(MODELS / "tfpose_mobilenet_v2_small.onnx")
    with create(path) as b:  # auto: TensorRT is not there; ONNX Runtime (or OpenVINO on a bf16 CPU) is
        ov = REGISTRY["openvino"]
        assert isinstance(b, OnnxRuntimeBackend) or (ov.reason() is None and ov.auto_why_not() is None)
    with pytest.raises(BackendUnavailable, match="unknown backend 'nonsense'.*onnxruntime"):
        create(path, "nonsense")
    if not REGISTRY["tensorrt"].can_run():  # no TensorRT or no GPU here: one error that says what to install
        with pytest.raises(BackendUnavailable, match="backend 'tensorrt' cannot run here: .*(pip install|CUDA device)"):
            create(path, "tensorrt")


def test_model_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(ModelFormatError, match="not found.*nope.onnx"):
        create(missing)
    with pytest.raises(ModelFormatError, match="directory"):
        create(tmp_path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelFormatError, match="empty"):
        create(empty)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"hello, this is not a model at all" * 4)
    with pytest.raises(ModelFormatError, match="not a model edgepose recognises"):
        create(junk)
    # Starts like ONNX, then garbage: ONNX Runtime's failure becomes a ModelFormatError naming the file.
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(need(MODELS / "tfpose_mobilenet_v2_small.onnx").read_bytes()[:5000])
    with pytest.raises(ModelFormatError, match="cannot load.*broken.onnx"):
        create(broken)


def test_format_detection_by_content(tmp_path: Path) -> None:
    onnx_bytes = need(MODELS / "tfpose_mobilenet_v2_small.onnx").read_bytes()
    assert detect_format(onnx_bytes) is ModelFormat.ONNX
    # The suffix does not matter.
    disguised = tmp_path / "model.engine"
    disguised.write_bytes(onnx_bytes)
    assert detect_format(disguised) is ModelFormat.ONNX
    engine = b"ftrt" + bytes(range(60))
    assert detect_format(engine) is ModelFormat.ENGINE
    header = b'{"imgsz": [368, 432]}'
    assert detect_format(len(header).to_bytes(4, "little") + header + engine) is ModelFormat.ENGINE
    nonce = bytes(range(200, 216))
    etlt_onnx = (0).to_bytes(4, "little") + nonce + bytes(range(64))
    etlt_uff = (7).to_bytes(4, "little") + b"input_1" + nonce + bytes(range(64))
    assert detect_format(etlt_onnx) is detect_format(etlt_uff) is ModelFormat.ETLT
    assert detect_format(b"GIF89a" + bytes(64)) is ModelFormat.UNKNOWN
    # What the ONNX Runtime backend says about the formats it cannot run.
    with pytest.raises(BackendUnavailable, match="TensorRT engine"):
        create(engine)
    path = tmp_path / "bodyposenet.etlt"
    path.write_bytes(etlt_uff)
    with pytest.raises(ModelFormatError, match=r"bodyposenet.etlt: wrong key or not a TAO model file"):
        create(path)  # the header is fine; the bytes after it decrypt to nonsense
    tlt = tmp_path / "model.tlt"
    tlt.write_bytes(bytes(range(255, 100, -1)))
    with pytest.raises(ModelFormatError, match="tlt"):
        create(tlt)
