"""Bad model files, keys, caches, specs and outputs: each one clear edgepose error (one line from the
CLI), a frame that cannot be inferred skipped and reported, and nothing the user gave overwritten.

Models are the real sample models, some with their graph changed through onnx.helper (an output
multiplied by inf, a metadata string that is not UTF-8)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need
from conftest import cli_error as _error

pytest.importorskip("cryptography")
pytest.importorskip("onnx")

from edgepose.cli import main  # noqa: E402
from edgepose.errors import EdgePoseError, ModelFormatError  # noqa: E402
from edgepose.formats.calib import CalibrationCache  # noqa: E402
from edgepose.formats.etlt import derive_key, pack_etlt, read_etlt, resolve_key  # noqa: E402

SMALL = MODELS / "tfpose_mobilenet_v2_small.onnx"
PEOPLE = ("000000000790.jpg", "000000030752.jpg")  # coco_mini images with people


def _poisoned(path: Path) -> Path:
    """v2_small with its heatmap multiplied by inf on black frames (max input < 0.5): a model that
    overflows on some inputs only, as an FP16 model can. Other frames give the model's own maps."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(need(SMALL)))
    for node in model.graph.node:
        node.output[:] = ["heatmap_raw" if o == "heatmap" else o for o in node.output]
    model.graph.node.extend([
        helper.make_node("ReduceMax", ["image"], ["image_max"], keepdims=0),
        helper.make_node("Less", ["image_max", "half"], ["black"]),
        helper.make_node("Where", ["black", "inf", "one"], ["gain"]),
        helper.make_node("Mul", ["heatmap_raw", "gain"], ["heatmap"]),
    ])
    model.graph.initializer.extend([helper.make_tensor(n, TensorProto.FLOAT, [], [v])
                                    for n, v in (("half", 0.5), ("inf", float("inf")), ("one", 1.0))])
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _poisoned(tmp_path_factory.mktemp("poisoned") / "poisoned.onnx")


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    """Two real images, a black one (non-finite maps from the poisoned model) and a 1x4000 strip
    (too wide for any input at height 368)."""
    src = tmp_path / "in"
    src.mkdir()
    for name in PEOPLE:
        shutil.copy(need(COCO_MINI / "images" / name), src / name)
    cv2.imwrite(str(src / "black.png"), np.zeros((240, 320, 3), np.uint8))
    cv2.imwrite(str(src / "strip.png"), np.full((1, 4000, 3), 128, np.uint8))
    return src


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("EDGEPOSE_KEY", "TAO_KEY"):
        monkeypatch.delenv(var, raising=False)



# -- keys and calibration caches -----------------------------------------------------------------

def test_empty_key_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for call in (lambda: resolve_key(""), lambda: derive_key(""), lambda: pack_etlt(b"\x08\x07", key="")):
        with pytest.raises(EdgePoseError, match="key: .*empty"):
            call()
    etlt = tmp_path / "m.etlt"
    etlt.write_bytes(pack_etlt(need(SMALL).read_bytes(), "k"))
    with pytest.raises(EdgePoseError, match="key: .*empty"):
        read_etlt(etlt, key="")
    for argv in (["convert", str(etlt), "-o", str(tmp_path / "m.onnx"), "--key", ""],
                 ["info", str(etlt), "--key", ""]):
        line = _error(capsys, main(argv))
        assert "key" in line and "empty" in line, line
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("text, where", [
    ("TRT-8601-EntropyCalibration2\ninput_1:0: -1\n", r"line 2 .*'input_1:0: -1'"),
    ("TRT-8601-EntropyCalibration2\ninput_1:0: +3c\n", r"line 2 .*'input_1:0: \+3c'"),
    ("TRT-8601-EntropyCalibration2\ninput_1:0: 3c_01\n", r"line 2 "),
    ("TRT-8601-EntropyCalibration2\na: 3c010a14\nb: 0x3c\n", r"line 3 "),
    ("TRT-" + "9" * 5000 + "-EntropyCalibration2\na: 3c010a14\n", r"line 1 "),
    ("TRT-8601-" + "E" * 5000 + "\na: 3c010a14\n", r"line 1 "),
])
def test_malformed_calibration_cache_names_the_line(text: str, where: str) -> None:
    with pytest.raises(ModelFormatError, match=where) as e:
        CalibrationCache.parse(text, "cal.bin")
    assert str(e.value).startswith("cal.bin: ") and len(str(e.value)) < 300


def test_calibration_cache_in_convert_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "cal.bin"
    for text in ("TRT-8601-EntropyCalibration2\ninput_1:0: -1\n", "TRT-" + "1" * 5000 + "-EntropyCalibration2\n"):
        bad.write_text(text)
        line = _error(capsys, main(["convert", str(need(SMALL)), "-o", str(tmp_path / "m.engine"), "-t", "int8",
                                    "--calib", str(bad), "--input-size", "368x432"]))
        assert re.search(r"cal\.bin: line [12]", line), line


# -- frames that cannot be inferred --------------------------------------------------------------

def test_non_finite_model_output_is_an_edgepose_error(poisoned: Path) -> None:
    from edgepose import EdgePose
    from edgepose.errors import ModelOutputError

    with EdgePose(str(poisoned)) as model:
        image = cv2.imread(str(need(COCO_MINI / "images" / PEOPLE[0])))
        assert len(model.infer(image)) >= 1  # the model's own maps on a real frame
        with pytest.raises(ModelOutputError, match=r"frames\[1\]: the model's heatmap output .*NaN or inf"):
            model.infer_batch([image, np.zeros((240, 320, 3), np.uint8)])
        assert len(model.infer(image)) >= 1  # the model is still usable


def test_infer_folder_skips_frames_that_cannot_be_inferred(poisoned: Path, mixed_folder: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    js, out = tmp_path / "poses.jsonl", tmp_path / "out"
    code = main(["infer", str(mixed_folder), "--model", str(poisoned), "--json", str(js), "--out", str(out),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    skipped = [ln for ln in err.splitlines() if "skipped" in ln and ":" in ln]
    assert any("black.png" in ln and "NaN or inf" in ln for ln in skipped), err
    assert any("strip.png" in ln and "would need an input" in ln for ln in skipped), err
    assert "2 frames" in err and "2 skipped" in err, err
    records = [json.loads(line) for line in js.read_text().splitlines()]
    assert sorted(Path(r["source"]).name for r in records) == sorted(PEOPLE)
    assert sorted(p.name for p in out.iterdir()) == sorted(PEOPLE)


def test_infer_one_image_that_cannot_be_inferred_is_one_line(poisoned: Path, mixed_folder: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    for name, words in (("black.png", "NaN or inf"), ("strip.png", "would need an input")):
        line = _error(capsys, main(["infer", str(mixed_folder / name), "--model", str(poisoned),
                                    "--json", str(tmp_path / f"{name}.jsonl")]))
        assert name in line and words in line, line


def test_eval_skips_frames_that_cannot_be_inferred(poisoned: Path, mixed_folder: Path, tmp_path: Path,
                                                  coco_annotations: dict, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("pycocotools")
    keep = [im for im in coco_annotations["images"] if im["file_name"] in PEOPLE]
    ids = {im["id"] for im in keep}
    extra = [{"id": 9_000_001, "file_name": "black.png", "width": 320, "height": 240},
             {"id": 9_000_002, "file_name": "strip.png", "width": 4000, "height": 1}]
    ann = dict(coco_annotations, images=keep + extra,
               annotations=[a for a in coco_annotations["annotations"] if a["image_id"] in ids])
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    code = main(["eval", "--model", str(poisoned), "--images", str(mixed_folder), "--annotations", str(path),
                 "--no-progress", "--json", str(tmp_path / "m.json")])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err
    assert "black.png" in captured.err and "strip.png" in captured.err
    assert "2 images" in captured.err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["AP"] > 0  # the two real images were scored


# -- damaged model files -------------------------------------------------------------------------

def _with_metadata(path: Path, key: str, raw_value: bytes) -> Path:
    """v2_small with a metadata entry whose value is ``raw_value`` byte for byte (may be invalid UTF-8,
    which onnx's API would not write)."""
    import onnx

    model = onnx.load(str(need(SMALL)))
    marker = "M" * len(raw_value)
    model.metadata_props.add(key=key, value=marker)
    path.write_bytes(model.SerializeToString().replace(marker.encode(), raw_value))
    return path


# Both CPU backends read ONNX metadata (OpenVINO's own reader raises on non-UTF-8; it falls back to onnx's).
_CPU_BACKENDS = ["onnxruntime", "openvino"]


@pytest.mark.parametrize("backend", _CPU_BACKENDS)
def test_metadata_that_is_not_utf8_is_tolerated(tmp_path: Path, capsys: pytest.CaptureFixture, backend: str) -> None:
    from edgepose import EdgePose
    from edgepose.cli.convert import onnx_model_info

    pytest.importorskip(backend)
    bad = _with_metadata(tmp_path / "badmeta.onnx", "note", b"\xff\xfe\xfd note \xc3\x28\x80")
    with EdgePose(str(bad), backend=backend) as model, EdgePose(str(need(SMALL)), backend=backend) as plain:
        same = {"name": "x", "keypoint_offset": (0.0, 0.0)}  # both follow the file name
        assert model.spec.replace(**same) == plain.spec.replace(**same)
        assert "\ufffd note" in model.backend.metadata["note"]
    info = onnx_model_info(bad.read_bytes(), str(bad))
    assert all(isinstance(v, str) for v in info.metadata.values()) and "\ufffd" in info.metadata["note"]
    assert main(["info", str(bad), "--json", "-b", backend]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["input_layout"] == "NHWC"


@pytest.mark.parametrize("backend", _CPU_BACKENDS)
def test_spec_metadata_that_is_not_utf8_is_a_spec_error(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        backend: str) -> None:
    pytest.importorskip(backend)
    bad = _with_metadata(tmp_path / "badspec.onnx", "edgepose_spec", b'{"paf_stride": \xff8}')
    line = _error(capsys, main(["info", str(bad), "-b", backend]))
    assert "edgepose_spec" in line and "not valid JSON" in line, line


def _damaged_payloads() -> dict:
    """v2_small's graph damaged as bit flips inside an .etlt payload damage it: the protobuf still
    parses, but a node reads a tensor nothing makes, or an attribute holds a value no runtime knows."""
    import onnx

    out = {}
    model = onnx.load(str(need(SMALL)))
    model.graph.node[5].input[0] = "MobilenetV2/expanded_Conv_1/nowhere"
    out["dangling input"] = model.SerializeToString()
    model = onnx.load(str(need(SMALL)))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.attribute.append(onnx.helper.make_attribute("auto_pad", "SAME_UPPEX"))
    out["unknown attribute value"] = model.SerializeToString()
    return out


@pytest.mark.parametrize("damage", ["dangling input", "unknown attribute value"])
def test_convert_of_a_damaged_etlt_writes_nothing(damage: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    etlt = tmp_path / "m.etlt"
    etlt.write_bytes(pack_etlt(_damaged_payloads()[damage], "k"))
    out = tmp_path / "m.onnx"
    line = _error(capsys, main(["convert", str(etlt), "-o", str(out), "--key", "k"]))
    assert "m.etlt" in line and "not a loadable ONNX model" in line, line
    assert not out.exists()
    # The same damage in a plain ONNX is refused before an .etlt is packed from it.
    onnx_in = tmp_path / "in.onnx"
    onnx_in.write_bytes(_damaged_payloads()[damage])
    line = _error(capsys, main(["convert", str(onnx_in), "-o", str(tmp_path / "p.etlt"), "--key", "k"]))
    assert "in.onnx" in line and "not a loadable ONNX model" in line, line
    assert not (tmp_path / "p.etlt").exists()


# -- outputs that are inputs (hard links, the model) ---------------------------------------------

def _hard_link(target: Path, link: Path) -> Path:
    import os

    os.link(target, link)
    return link


def _same_bytes(path: Path, data: bytes) -> bool:
    return path.read_bytes() == data


def test_outputs_that_are_inputs_are_refused_even_with_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture
                                                                 ) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(need(SMALL), model)
    model_bytes = model.read_bytes()
    image = tmp_path / "people.jpg"
    shutil.copy(need(COCO_MINI / "images" / PEOPLE[0]), image)
    image_bytes = image.read_bytes()
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (160, 120))
    for _ in range(3):
        writer.write(cv2.resize(cv2.imread(str(image)), (160, 120)))
    writer.release()
    video_bytes = video.read_bytes()
    spec = tmp_path / "spec.json"
    spec.write_text('{"target_height": 184}')
    spec_bytes = spec.read_bytes()
    hard_video = _hard_link(video, tmp_path / "hard.avi")
    hard_image = _hard_link(image, tmp_path / "hard.jpg")
    hard_model = _hard_link(model, tmp_path / "hard_model.onnx")
    hard_spec = _hard_link(spec, tmp_path / "hard_spec.json")
    m = ["--model", str(model), "--overwrite"]
    cases = [
        ["infer", str(video), *m, "--json", str(hard_video)],
        ["infer", str(video), *m, "--json", str(model)],
        ["infer", str(video), *m, "--json", str(hard_model)],
        ["infer", str(video), *m, "--out", str(hard_video)],
        ["infer", str(video), *m, "--spec", str(spec), "--json", str(hard_spec)],
        ["infer", str(image), *m, "--out", str(hard_image)],
        ["infer", str(image), *m, "--json", str(hard_image)],
        ["infer", str(image), *m, "--out", str(tmp_path / "x.jpg"), "--json", str(model)],
        ["convert", str(model), "-o", str(hard_model.with_name("hard_model.etlt")), "--overwrite"],
        ["bench", *m, "--json", str(hard_model), "--frames", "1", "--warmup", "0"],
    ]
    # A hard link to the model, named like an .etlt output.
    _hard_link(model, tmp_path / "hard_model.etlt")
    for argv in cases:
        line = _error(capsys, main(argv))
        assert "same file as" in line, (argv, line)
    assert _same_bytes(model, model_bytes) and _same_bytes(image, image_bytes)
    assert _same_bytes(video, video_bytes) and _same_bytes(spec, spec_bytes)


def test_convert_and_eval_outputs_that_are_inputs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              coco_annotations: dict) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(need(SMALL), model)
    etlt = tmp_path / "model.etlt"
    assert main(["convert", str(model), "-o", str(etlt), "-k", "k"]) == 0
    etlt_bytes = etlt.read_bytes()
    cal = tmp_path / "cal.bin"
    cal.write_text("TRT-8601-EntropyCalibration2\nimage: 3c010a14\n")
    cases = [
        (["convert", str(etlt), "-o", str(_hard_link(etlt, tmp_path / "again.onnx")), "-k", "k", "--overwrite"],
         etlt),
        (["convert", str(model), "-o", str(_hard_link(cal, tmp_path / "cal.engine")), "-t", "int8", "--calib",
          str(cal), "--overwrite", "--input-size", "368x432"], cal),
    ]
    for argv, kept in cases:
        before = kept.read_bytes()
        line = _error(capsys, main(argv))
        assert "same file as" in line, (argv, line)
        assert kept.read_bytes() == before
    assert etlt.read_bytes() == etlt_bytes
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco_annotations))
    for out in (_hard_link(ann, tmp_path / "metrics.json"), model):
        line = _error(capsys, main(["eval", "--model", str(model), "--images", str(COCO_MINI / "images"),
                                    "--annotations", str(ann), "--json", str(out), "--overwrite"]))
        assert "same file as" in line, line
    assert json.loads(ann.read_text()) == coco_annotations


# -- JSON that is not what it should be ----------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON that Python's parser cannot nest (RecursionError)
HUGE_INT = "1" + "0" * 5000  # valid JSON that int() refuses (more than 4300 digits)


@pytest.mark.parametrize("text", [DEEP, '{"target_height": ' + HUGE_INT + "}", '{"scale": 1' + "0" * 400 + "}",
                                  '{"keypoint_offset": [1' + "0" * 400 + ", 0]}"])
def test_spec_files_that_python_cannot_read_are_spec_errors(text: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from edgepose import EdgePose
    from edgepose.errors import SpecError

    spec = tmp_path / "spec.json"
    spec.write_text(text)
    with pytest.raises(SpecError, match=r"spec\.json"):
        EdgePose(str(need(SMALL)), spec=str(spec))
    # Beside the model, as model.edgepose.json.
    model = tmp_path / "model.onnx"
    shutil.copy(need(SMALL), model)
    (tmp_path / "model.edgepose.json").write_text(text)
    with pytest.raises(SpecError, match=r"model\.edgepose\.json"):
        EdgePose(str(model))
    line = _error(capsys, main(["info", str(model)]))
    assert "model.edgepose.json" in line, line


def test_deep_spec_metadata_is_a_spec_error(tmp_path: Path) -> None:
    from edgepose import EdgePose
    from edgepose.errors import SpecError

    bad = _with_metadata(tmp_path / "deep.onnx", "edgepose_spec", DEEP.encode())
    with pytest.raises(SpecError, match="edgepose_spec"):
        EdgePose(str(bad))


@pytest.mark.parametrize("sidecar, words", [
    (DEEP, "cannot read it as JSON"),
    ('{"edgepose_engine": 1, "spec": {}, "build": [1, 2], "engine_sha256": ""}', "'build' must be a JSON object"),
    ('{"edgepose_engine": 1, "spec": {}, "build": "x", "engine_sha256": ""}', "'build' must be a JSON object"),
    ('{"edgepose_engine": 1, "spec": {}, "build": {}, "engine_sha256": 7}', "'engine_sha256' must be"),
    ('{"edgepose_engine": 1, "spec": {"scale": [[]]}, "build": {}}', "spec.*scale"),
    ('{"edgepose_engine": 1, "spec": {"nonsense": 1}, "build": {}}', "spec.*unknown ModelSpec field"),
    ('{"edgepose_engine": 1, "spec": {}, "build": {"source_sha256": [1]}}', "'build.source_sha256' must be"),
])
def test_engine_sidecar_fields_of_the_wrong_kind_are_spec_errors(sidecar: str, words: str, tmp_path: Path) -> None:
    from edgepose.errors import SpecError
    from edgepose.formats.engine import read_sidecar, sidecar_path

    plan = b"ftrt" + bytes(range(256))
    engine = tmp_path / "pose.engine"
    engine.write_bytes(plan)
    sidecar_path(engine).write_text(sidecar)
    with pytest.raises(SpecError, match=words) as e:
        read_sidecar(engine, plan)
    assert "pose.engine.edgepose.json" in str(e.value)


# -- integrity: a recorded sha256 ----------------------------------------------------------------

def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["onnx", "etlt"])
def test_model_sha256_in_the_spec_sidecar_catches_a_changed_model(kind: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from edgepose import EdgePose

    model = tmp_path / f"model.{kind}"
    model.write_bytes(need(SMALL).read_bytes() if kind == "onnx" else pack_etlt(need(SMALL).read_bytes(), "k"))
    side = tmp_path / "model.edgepose.json"
    side.write_text(json.dumps({"model_sha256": _sha(model), "target_height": 184}))
    with EdgePose(str(model), key="k") as m:
        assert m.spec.target_height == 184  # the other fields still apply
    assert main(["info", str(model), "--key", "k", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == _sha(model)
    # One byte flipped in the weights: without a record it would load silently with other outputs.
    _flip(model, len(model.read_bytes()) * 2 // 3)
    with pytest.raises(ModelFormatError, match=rf"model\.{kind}: sha256 .* model_sha256 .*model\.edgepose\.json"):
        EdgePose(str(model), key="k")
    line = _error(capsys, main(["info", str(model), "--key", "k"]))
    assert "model.edgepose.json" in line and "model_sha256" in line, line
    side.write_text(json.dumps({"model_sha256": 12}))
    with pytest.raises(EdgePoseError, match="model_sha256.*sha256 hex digest"):
        EdgePose(str(model), key="k")


def test_engine_sidecar_checks_the_model_it_was_built_from(tmp_path: Path) -> None:
    from edgepose.formats.engine import read_sidecar, sidecar_path, write_engine

    plan = b"ftrt" + bytes(range(200))
    source = tmp_path / "pose.onnx"
    shutil.copy(need(SMALL), source)
    engine = tmp_path / "pose.engine"
    write_engine(engine, plan, {"input_name": "image"}, {"source": source.name, "source_file_sha256": _sha(source)})
    assert read_sidecar(engine, plan).build["source_file_sha256"] == _sha(source)
    _flip(source, 100_000)
    with pytest.raises(ModelFormatError, match=r"pose\.onnx.*changed since .*pose\.engine was built.*"
                                               r"pose\.engine\.edgepose\.json"):
        read_sidecar(engine, plan)
    source.unlink()  # the source is not beside the engine (the usual deployment): nothing to check
    assert read_sidecar(engine, plan) is not None
    assert json.loads(sidecar_path(engine).read_text())["build"]["source"] == "pose.onnx"
