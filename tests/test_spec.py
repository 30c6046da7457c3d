"""ModelSpec: presets, JSON round trip, validation, detection on the real models and on tiny
synthetic ONNX models (outputs told apart by channel count, strides from sizes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pytest
from conftest import MODELS, need

from edgepose.errors import SpecError
from edgepose.spec import ModelInfo, ModelSpec, spec_for
from edgepose.topology import BODYPOSENET

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from edgepose.backends import create  # noqa: E402
from edgepose.backends.base import TensorSpec  # noqa: E402


def tiny_model(
    *,
    layout: str = "NHWC",
    size: Optional[Tuple[int, int]] = (64, 96),
    outputs: Sequence[Tuple[str, int, int]] = (("heatmap", 19, 8), ("paf", 38, 8)),
    input_name: str = "image",
    batch: object = "batch",
    metadata: Optional[Dict[str, str]] = None,
) -> bytes:
    """A tiny ONNX pose-like model: one strided conv per output (name, channels, stride).

    ``size`` None gives dynamic height and width; ``layout`` applies to the input and outputs.
    """
    rng = np.random.default_rng(0)
    h, w = size if size is not None else ("height", "width")
    in_shape = [batch, h, w, 3] if layout == "NHWC" else [batch, 3, h, w]
    nodes, inits, outs = [], [], []
    x = input_name
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [input_name], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
    for name, ch, stride in outputs:
        wname = f"w_{len(inits)}"
        inits.append(helper.make_tensor(wname, TensorProto.FLOAT, [ch, 3, stride, stride],
                                        rng.normal(0, 0.01, (ch, 3, stride, stride)).astype(np.float32).ravel()))
        conv_out = name if layout == "NCHW" else f"{name}_nchw"
        nodes.append(helper.make_node("Conv", [x, wname], [conv_out], kernel_shape=[stride, stride],
                                      strides=[stride, stride]))
        if layout == "NHWC":
            nodes.append(helper.make_node("Transpose", [conv_out], [name], perm=[0, 2, 3, 1]))
        oh = h // stride if size is not None else f"h_div{stride}"
        ow = w // stride if size is not None else f"w_div{stride}"
        oshape = [batch, oh, ow, ch] if layout == "NHWC" else [batch, ch, oh, ow]
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, oshape))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, in_shape)],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    return model.SerializeToString()


# -- presets, JSON, validation ----------------------------------------------------------------


@pytest.mark.parametrize("spec", list(ModelSpec.presets().values()), ids=lambda s: s.name)
def test_json_round_trip(spec: ModelSpec, tmp_path: Path) -> None:
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    path = tmp_path / "spec.json"
    spec.to_json(path)
    assert ModelSpec.from_json(path) == spec
    assert json.loads(path.read_text())["topology"] == spec.topology.name


def test_bodyposenet_preset_matches_tao() -> None:
    s = ModelSpec.bodyposenet()
    assert (s.input_name, s.input_layout, s.color, s.input_size) == ("input_1:0", "NHWC", "RGB", (288, 384))
    assert s.scale * 255 + s.offset == pytest.approx(255 / 256 - 0.5)
    assert s.pad_value * s.scale + s.offset == 0.0  # TAO's inferencer: normalised padding 0
    assert (s.heatmap_stride, s.paf_stride, s.resize) == (8, 2, "letterbox")


@pytest.mark.parametrize("field,value,words", [
    ("input_layout", "NCWH", "input_layout"),
    ("color", "YUV", "color"),
    ("resize", "crop", "resize"),
    ("interpolation", "lanczos", "interpolation"),
    ("heatmap_stride", 0, "heatmap_stride"),
    ("paf_stride", -2, "paf_stride"),
    ("scale", float("nan"), "scale"),
    ("scale", 0.0, "scale"),
    ("input_size", (0, 10), "input_size"),
    ("input_size", (368,), "input_size"),
    ("output_layout", ("NHWC", "NCWH"), "output_layout"),
    ("topology", "coco99", "topology"),
    ("target_height", 4, "target_height"),
])
def test_invalid_fields_raise_spec_error(field: str, value: object, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        ModelSpec(**{field: value})


def test_unknown_fields_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="unknown ModelSpec field.*'strid'"):
        ModelSpec.from_dict({"strid": 8})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="bad.json"):
        ModelSpec.from_json(bad)
    with pytest.raises(SpecError, match="not found"):
        ModelSpec.from_json(tmp_path / "missing.json")


def test_layout_normalised_and_per_output() -> None:
    s = ModelSpec(output_layout=("nchw", "NHWC"), input_layout="nchw", topology="bodyposenet18")
    assert (s.heatmap_layout, s.paf_layout, s.input_layout) == ("NCHW", "NHWC", "NCHW")
    assert ModelSpec(output_layout=["NCHW", "NCHW"]).output_layout == "NCHW"
    assert s.topology is BODYPOSENET
    assert ModelSpec(heatmap_stride=4).paf_stride == 4


# -- detection on the real models ---------------------------------------------------------------


@pytest.mark.parametrize("name,layout", [
    ("tfpose_mobilenet_thin", "NHWC"),
    ("tfpose_mobilenet_v2_small", "NHWC"),
    ("omz_human_pose_estimation_0001", "NCHW"),
])
def test_detect_real_models(name: str, layout: str) -> None:
    path = need(MODELS / f"{name}.onnx")
    card = json.loads(need(MODELS / f"{name}.json").read_text())
    spec = spec_for(path)
    assert spec.name == name
    assert spec.input_name == card["input"]["name"]
    assert spec.input_layout == card["input"]["layout"] == layout
    assert spec.color == card["input"]["color_order"]
    assert (spec.scale, spec.offset) == (1.0, 0.0)  # raw 0..255 (OMZ normalises in its graph)
    assert spec.input_size is None and spec.resize == "height"
    by_channels = {o["shape"][3 if layout == "NHWC" else 1]: o for o in card["outputs"]}
    assert spec.heatmap_output == by_channels[19]["name"]
    assert spec.paf_output == by_channels[38]["name"]
    assert (spec.heatmap_layout, spec.paf_layout) == (layout, layout)
    assert (spec.heatmap_stride, spec.paf_stride) == (by_channels[19]["stride"], by_channels[38]["stride"])


# -- detection on synthetic models ----------------------------------------------------------------


def detect_bytes(model: bytes, **overrides: object) -> ModelSpec:
    with create(model, "onnxruntime") as backend:
        return ModelSpec.detect(backend, **overrides)


def test_swapped_output_order_and_other_names() -> None:
    model = tiny_model(outputs=(("out_b", 38, 8), ("out_a", 19, 8)), input_name="pixels")
    spec = detect_bytes(model)
    assert (spec.heatmap_output, spec.paf_output, spec.input_name) == ("out_a", "out_b", "pixels")
    assert (spec.heatmap_stride, spec.paf_stride, spec.input_size) == (8, 8, (64, 96))
    assert spec.resize == "letterbox"  # a fixed-size model of unknown origin


def test_bodyposenet_like_model_gets_tao_preset() -> None:
    model = tiny_model(size=(288, 384), input_name="input_1:0", batch=1,
                       outputs=(("conv2d_transpose_1/BiasAdd:0", 38, 2), ("heatmap_out/BiasAdd:0", 19, 8)))
    spec = detect_bytes(model)
    tao = ModelSpec.bodyposenet()
    assert spec == tao
    assert (spec.heatmap_stride, spec.paf_stride) == (8, 2)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_strides_from_sizes_and_layouts(layout: str) -> None:
    model = tiny_model(layout=layout, size=(96, 128), outputs=(("paf", 38, 4), ("heat", 19, 16)))
    spec = detect_bytes(model)
    assert (spec.input_layout, spec.heatmap_layout, spec.paf_layout) == (layout, layout, layout)
    assert (spec.heatmap_stride, spec.paf_stride) == (16, 4)


def test_dynamic_model_stride_from_metadata_or_names_or_argument() -> None:
    # Symbolic dims "h_div8" spell the stride.
    assert detect_bytes(tiny_model(size=None)).heatmap_stride == 8
    # Metadata wins over the names.
    assert detect_bytes(tiny_model(size=None, metadata={"output_stride": "4"})).heatmap_stride == 4
    # Neither: an explicit argument is needed, and the error says so.
    info = ModelInfo(
        inputs=[TensorSpec("image", (None, None, None, 3))],
        outputs=[TensorSpec("a", (None, None, None, 19)), TensorSpec("b", (None, None, None, 38))],
    )
    with pytest.raises(SpecError, match="heatmap_stride="):
        ModelSpec.detect(info)
    spec = ModelSpec.detect(info, heatmap_stride=8, paf_stride=8)
    assert (spec.heatmap_output, spec.paf_output, spec.input_size) == ("a", "b", None)


def test_metadata_spec_and_color() -> None:
    meta = {"input_color_order": "RGB", "edgepose_spec": json.dumps({"scale": 0.5, "pad_value": 3})}
    spec = detect_bytes(tiny_model(metadata=meta))
    assert (spec.color, spec.scale, spec.pad_value) == ("RGB", 0.5, 3.0)
    with pytest.raises(SpecError, match="edgepose_spec"):
        detect_bytes(tiny_model(metadata={"edgepose_spec": "{oops"}))


def test_no_pose_outputs_raises_naming_outputs() -> None:
    model = tiny_model(outputs=(("logits", 10, 8), ("boxes", 4, 8)))
    with pytest.raises(SpecError, match=r"logits.*boxes|boxes.*logits") as e:
        detect_bytes(model)
    assert "19" in str(e.value) and "38" in str(e.value)
    only_heat = tiny_model(outputs=(("heat", 19, 8), ("other", 7, 8)))
    with pytest.raises(SpecError, match="PAF"):
        detect_bytes(only_heat)


def test_ambiguous_outputs_need_a_name() -> None:
    model = tiny_model(outputs=(("h1", 19, 8), ("h2", 19, 8), ("p", 38, 8)))
    with pytest.raises(SpecError, match="several outputs.*heatmap_output="):
        detect_bytes(model)
    assert detect_bytes(model, heatmap_output="h2").heatmap_output == "h2"


def test_overrides_and_fixed_size_checks() -> None:
    model = tiny_model(size=(64, 96))
    spec = detect_bytes(model, color="RGB", pad_value=128, name="mine")
    assert (spec.color, spec.pad_value, spec.name) == ("RGB", 128.0, "mine")
    with pytest.raises(SpecError, match="fixed input"):
        detect_bytes(model, input_size=(128, 96))
    with pytest.raises(SpecError, match="unknown ModelSpec field"):
        detect_bytes(model, colour="RGB")
    with pytest.raises(SpecError, match="input_name 'nope'"):
        detect_bytes(model, input_name="nope")


def test_side_json_override(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_model())
    assert spec_for(path).color == "BGR"
    (tmp_path / "tiny.edgepose.json").write_text(json.dumps({"color": "RGB", "scale": 0.25}))
    spec = spec_for(path)
    assert (spec.name, spec.color, spec.scale) == ("tiny", "RGB", 0.25)
    # Arguments win over the file.
    assert spec_for(path, color="BGR").color == "BGR"
    # A typo in the edgepose file is an error naming the file.
    (tmp_path / "tiny.edgepose.json").write_text(json.dumps({"colr": "RGB"}))
    with pytest.raises(SpecError, match="tiny.edgepose.json"):
        spec_for(path)


def test_plain_json_next_to_model_only_when_it_is_a_spec(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_model())
    (tmp_path / "m.json").write_text(json.dumps({"name": "card", "bytes": 123, "license": "x"}))
    assert spec_for(path).name == "m"  # a model card is not an override
    (tmp_path / "m.json").write_text(json.dumps({"pad_value": 7}))
    assert spec_for(path).pad_value == 7.0


def test_complete_spec_is_checked_against_the_model(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_model())
    with create(path) as backend:
        good = ModelSpec(input_size=(64, 96))
        assert spec_for(path, backend, spec=good) == good
        with pytest.raises(SpecError, match="heatmap_output 'nope'"):
            spec_for(path, backend, spec=good.replace(heatmap_output="nope"))
        with pytest.raises(SpecError, match="has 38 channels.*needs 19"):
            spec_for(path, backend, spec=good.replace(heatmap_output="paf", paf_output="heatmap"))
