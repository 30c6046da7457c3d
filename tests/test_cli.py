"""The ``edgepose`` command line on real images and the OMZ model: infer, eval, info, user errors.

Most tests call ``edgepose.cli.main`` in-process; the console script and ``python -m edgepose``
run once each in a subprocess (including the Ctrl-C test, which needs a real signal).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need

from edgepose.cli import main

pytest.importorskip("onnxruntime", reason="the CLI tests run the OMZ model with ONNX Runtime")

# Images of coco_mini with people in them (the first has 4 labelled persons, the others 1-2).
PEOPLE = ("000000000790.jpg", "000000030752.jpg", "000000034417.jpg", "000000040083.jpg", "000000069468.jpg")
SIX_KEYS = ["AP", "AP50", "AP75", "APm", "APl", "AR"]


@pytest.fixture(scope="module")
def model() -> str:
    return str(need(MODELS / "omz_human_pose_estimation_0001.onnx"))


@pytest.fixture(scope="module")
def images() -> Path:
    return need(COCO_MINI / "images")


def _lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


def _frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _make_video(path: Path, images: Path, names, size=(320, 240), fps=10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for name in names:
        writer.write(cv2.resize(cv2.imread(str(images / name)), size, interpolation=cv2.INTER_AREA))
    writer.release()


def test_infer_image_writes_overlay_and_json(tmp_path, model, images, coco_annotations, capsys):
    src = images / PEOPLE[0]
    out, js = tmp_path / "out.jpg", tmp_path / "poses.jsonl"
    assert main(["infer", str(src), "--model", model, "--out", str(out), "--json", str(js)]) == 0
    frame, drawn = cv2.imread(str(src)), cv2.imread(str(out))
    assert drawn.shape == frame.shape
    (record,) = _lines(js)
    assert record["source"] == str(src) and record["frame"] == 0
    assert (record["width"], record["height"]) == (frame.shape[1], frame.shape[0])
    # Four labelled people (10-14 keypoints each): four persons with >= 10 parts, one in each
    # person's box (measured: 13-15 parts each, plus one 3-part fragment at the left edge).
    whole = [np.array(p["keypoints"]) for p in record["persons"] if sum(k[2] > 0 for k in p["keypoints"]) >= 10]
    assert len(whole) == 4, f"{len(whole)} persons with >= 10 parts, the image has four people"
    labelled = [a["bbox"] for a in coco_annotations["annotations"] if a["image_id"] == int(src.stem)]
    assert len(labelled) == 4
    for x, y, w, h in labelled:
        inside = [np.median(kp[kp[:, 2] > 0, :2], axis=0) for kp in whole]
        assert sum(x <= cx <= x + w and y <= cy <= y + h for cx, cy in inside) == 1, (x, y, w, h)
    for person in record["persons"]:
        assert len(person["keypoints"]) == 18 and all(len(k) == 3 for k in person["keypoints"])
        xs = [k[0] for k in person["keypoints"] if k[2] > 0]
        assert xs and all(0 <= x < frame.shape[1] for x in xs), "keypoints must be in image pixels"
    assert {"preprocess", "inference", "decode", "total"} <= set(record["timings"])
    # The overlay differs from the input (skeletons drawn), but only in part of the image.
    changed = np.any(np.abs(drawn.astype(int) - frame.astype(int)) > 40, axis=2).mean()
    assert 0.0005 < changed < 0.5

    capsys.readouterr()
    # Existing outputs are refused without --overwrite (before the model even loads) ...
    assert main(["infer", str(src), "--model", model, "--out", str(out), "--json", str(js)]) == 1
    assert "already exists" in _one_error_line(capsys.readouterr().err)
    # ... and replaced with it.
    assert main(["infer", str(src), "-m", model, "--out", str(out), "--json", str(js), "--overwrite"]) == 0


def test_infer_image_without_outputs_prints_json_lines(model, images, capsys):
    assert main(["infer", str(images / PEOPLE[1]), "--model", model]) == 0
    out = capsys.readouterr().out
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["frame"] == 0 and isinstance(record["persons"], list)


def test_infer_folder_skips_and_reports_a_corrupt_image(tmp_path, model, images, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in PEOPLE[:3]:
        shutil.copy(images / name, src / name)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(64))
    (src / "notes.txt").write_text("not an image, ignored")
    out, js = tmp_path / "out", tmp_path / "poses.jsonl"
    assert main(["infer", str(src), "--model", model, "--out", str(out), "--json", str(js)]) == 0
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "skipped" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(PEOPLE[:3])
    records = _lines(js)
    assert [Path(r["source"]).name for r in records] == sorted(PEOPLE[:3])
    for name in PEOPLE[:3]:
        assert cv2.imread(str(out / name)).shape == cv2.imread(str(src / name)).shape


def test_infer_video_keeps_frame_count_fps_and_size(tmp_path, model, images):
    video = tmp_path / "clip.mp4"
    _make_video(video, images, PEOPLE, size=(320, 240), fps=10.0)
    out, js = tmp_path / "annotated.mp4", tmp_path / "poses.jsonl"
    assert main(["infer", str(video), "--model", model, "--out", str(out), "--json", str(js)]) == 0
    assert _frame_count(out) == len(PEOPLE)
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (320, 240)
    cap.release()
    records = _lines(js)
    assert [r["frame"] for r in records] == list(range(len(PEOPLE)))
    assert all(r["source"] == str(video) for r in records)


def test_ctrl_c_finishes_outputs_and_exits_130(tmp_path, model, images):
    """A real SIGINT to ``python -m edgepose infer``: exit 130, a playable video, whole JSON lines."""
    video = tmp_path / "long.mp4"
    _make_video(video, images, PEOPLE * 40, size=(256, 192), fps=25.0)  # 200 frames: far more than we wait for
    out, js = tmp_path / "annotated.mp4", tmp_path / "poses.jsonl"
    cmd = [sys.executable, "-m", "edgepose", "infer", str(video), "-m", model, "--out", str(out), "--json", str(js)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if js.exists() and len(js.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"finished or failed before the interrupt: {proc.communicate()}"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    records = _lines(js)
    assert 2 <= len(records) < 200
    assert _frame_count(out) == len(records), "each finished frame is in both outputs"


def test_eval_subset_writes_exactly_six_metrics(tmp_path, model, images, capsys):
    out = tmp_path / "metrics.json"
    ann = need(COCO_MINI / "person_keypoints.json")
    argv = ["eval", "--model", model, "--images", str(images), "--annotations", str(ann), "--limit", "8",
            "--json", str(out)]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    assert list(metrics) == SIX_KEYS
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in metrics.values())
    assert metrics["AR"] > 0.0, "9 labelled people in the first 8 images, none matched"
    printed = capsys.readouterr().out.split()
    for key in SIX_KEYS:
        assert float(printed[printed.index(key) + 1]) == pytest.approx(metrics[key], abs=1e-4)


def test_info_prints_format_tensors_and_spec(model, capsys):
    assert main(["info", model, "--backend", "onnxruntime"]) == 0
    text = capsys.readouterr().out
    assert "format:   onnx" in text and "onnxruntime" in text
    for name in ("image", "heatmap", "paf"):
        assert name in text
    spec = json.loads(text[text.index("spec:") + len("spec:"):])
    assert spec["input_layout"] == "NCHW"

    assert main(["info", model, "--json", "--backend", "onnxruntime"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["format"] == "onnx" and facts["backend"]["name"] == "onnxruntime"
    assert {t["name"] for t in facts["outputs"]} == {"heatmap", "paf"}
    assert facts["spec"] == spec


def test_info_applies_spec_overrides_and_input_size(tmp_path, model, capsys):
    overrides = tmp_path / "spec.json"
    overrides.write_text(json.dumps({"target_height": 184}))
    assert main(["info", model, "--json", "--spec", str(overrides)]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["target_height"] == 184
    assert main(["info", model, "--json", "--input-size", "256x320"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["input_size"] == [256, 320]
    overrides.write_text(json.dumps({"target_heigth": 184}))
    assert main(["info", model, "--spec", str(overrides)]) == 1
    assert "target_heigth" in _one_error_line(capsys.readouterr().err)


def _not_a_pose_model(path: Path) -> Path:
    """A valid ONNX model whose output has 3 channels: no heatmap / PAF pair."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, None, None])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, None, None])
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["out"])], "relu", [x], [y])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize(
    "argv, message, code",
    [
        (["infer", "{tmp}/missing.jpg", "-m", "{model}"], "no such file", 1),
        (["infer", "{image}", "-m", "{tmp}/missing.onnx"], "model file not found", 1),
        (["infer", "{tmp}/corrupt.jpg", "-m", "{model}"], "cannot decode", 1),
        (["infer", "{image}", "-m", "{tmp}/text.onnx"], "text.onnx", 1),
        (["infer", "{image}", "-m", "{tmp}/relu.onnx"], "heatmap", 1),
        (["infer", "{tmp}/empty", "-m", "{model}"], "no images", 1),
        (["infer", "{tmp}/notes.txt", "-m", "{model}"], "cannot open video", 1),
        (["infer", "99", "-m", "{model}"], "cannot open camera", 1),
        (["infer", "rtsp://127.0.0.1:1/none", "-m", "{model}"], "cannot open stream", 1),
        (["infer", "{image}", "-m", "{model}", "--input-size", "368x"], "HEIGHTxWIDTH", 2),
        (["infer", "{image}", "-m", "{model}", "--out", "{tmp}/nowhere/out.jpg"], "does not exist", 1),
        (["infer", "{image}", "-m", "{model}", "--out", "{tmp}/out.xyz"], "cannot write images", 1),
        (["infer", "{image}", "-m", "{model}", "--threads", "0"], "positive integer", 2),
        (["infer", "{tmp}/corrupt.jpg", "-m", "{model}", "--out", "{tmp}/corrupt.jpg", "--overwrite"],
         "cannot decode", 1),
        (["infer", "{image}", "-m", "{model}", "--out", "{image}", "--overwrite"], "is the source image", 1),
        (["infer", "{image}", "-m", "{model}", "--out", "{tmp}/a.jpg", "--json", "{tmp}/a.jpg"], "also the --out", 1),
        (["infer", "{image}", "-m", "{model}", "--backend", "nonsense"], "nonsense", 1),
        (["eval", "-m", "{model}", "--images", "{images}", "--annotations", "{tmp}/missing.json"], "not found", 1),
        (["eval", "-m", "{model}", "--images", "{images}", "--annotations", "{tmp}/text.onnx"], "not valid json", 1),
        (["eval", "-m", "{model}", "--images", "{tmp}", "--annotations", "{ann}"], "missing", 1),
        (["info", "{tmp}/missing.onnx"], "not found", 1),
        (["frobnicate"], "invalid choice", 2),
        (["infer", "{image}"], "required", 2),
        ([], "command is required", 2),
    ],
)
def test_user_errors_give_one_line_and_the_exit_code(argv, message, code, tmp_path, model, images, capsys):
    """Exit 2 for a command line argparse rejects (usage), 1 for a well-formed command that fails."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a video\n")
    (tmp_path / "corrupt.jpg").write_bytes(b"\x00" * 100)
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    _not_a_pose_model(tmp_path / "relu.onnx")
    values = {"tmp": str(tmp_path), "model": model, "image": str(images / PEOPLE[0]),
              "images": str(images), "ann": str(COCO_MINI / "person_keypoints.json")}
    rc = main([a.format(**values) for a in argv])
    assert rc == code
    line = _one_error_line(capsys.readouterr().err)
    assert message in line, line


def test_json_never_replaces_a_source_file(tmp_path, model, images, capsys):
    """--json naming the input (an image, or an image of the input folder) is refused even with
    --overwrite: the source would be truncated before it is read."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in PEOPLE[:2]:
        shutil.copy(images / name, folder / name)
    first = folder / PEOPLE[0]
    before = first.read_bytes()
    for source in (first, folder):
        rc = main(["infer", str(source), "-m", model, "--json", str(first), "--overwrite", "--no-progress"])
        assert rc == 1
        assert "is a source file" in _one_error_line(capsys.readouterr().err)
        assert first.read_bytes() == before


def test_console_script_and_module_entry_points(model):
    # The script pip installed beside this interpreter (the venv's bin/), whether or not the venv
    # is activated: the README runs the tests as .venv/bin/python -m pytest, with no PATH change.
    exe = Path(sys.executable).parent / "edgepose"
    if not exe.is_file():
        pytest.skip(f"the edgepose console script is not installed beside {sys.executable} (pip install -e .)")
    done = subprocess.run([str(exe), "info", model, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spec"]["input_layout"] == "NCHW"
    done = subprocess.run([str(exe), "infer", "no/such/image.jpg", "-m", model], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert "no such file" in _one_error_line(done.stderr)
    done = subprocess.run([sys.executable, "-m", "edgepose", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("edgepose ")


def test_closed_stdout_ends_quietly():
    """`edgepose ... | head`: the reader goes away; no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "bench", "--decoder-only", "--people", "1",
                             "--frames", "2", "--warmup", "1", "--json", "-", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait() == 1  # stopped on the broken pipe: a failure, quietly
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_progress_lines_when_stderr_is_not_a_terminal(monkeypatch):
    """Not a terminal (a log, CI): one plain line per interval, never a bar; none with progress off."""
    import io

    from edgepose.cli import _common

    clock = [100.0]
    monkeypatch.setattr(_common.time, "perf_counter", lambda: clock[0])
    out = io.StringIO()
    report = _common.Reporter("edgepose infer", out, interval=10.0)
    report.start(130)
    for _ in range(40):
        clock[0] += 0.25  # 4 fps
        report.advance()
    report.message("a message")
    for _ in range(30):
        clock[0] += 0.5
        report.advance()
    report.finish()
    clock[0] += 60
    report.advance()
    assert out.getvalue().splitlines() == ["edgepose infer: 40/130 frames, 4.0 fps", "edgepose infer: a message",
                                           "edgepose infer: 60/130 frames, 3.0 fps"]
    assert "\r" not in out.getvalue()
    quiet = io.StringIO()
    report = _common.Reporter("edgepose eval", quiet, progress=False)
    report.start(None)
    clock[0] += 60
    report.advance(5)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("command", ["infer", "eval", "bench"])
def test_commands_report_progress_off_a_terminal(command, tmp_path, model, images, capsys, monkeypatch):
    """infer, eval and bench print the plain progress lines when stderr is not a terminal (capsys)."""
    from edgepose.cli import _common

    monkeypatch.setattr(_common.Reporter, "INTERVAL", 0.0)  # a line on every frame
    three = tmp_path / "three"
    three.mkdir()
    for name in PEOPLE[:3]:
        shutil.copy(images / name, three / name)
    argv = {
        "infer": ["infer", str(tmp_path / "three"), "-m", model, "--json", str(tmp_path / "p.jsonl")],
        "eval": ["eval", "-m", model, "--images", str(images), "--annotations",
                 str(COCO_MINI / "person_keypoints.json"), "--limit", "3"],
        "bench": ["bench", "--decoder-only", "--people", "1", "--frames", "3", "--warmup", "0", "--json",
                  str(tmp_path / "b.json")],
    }[command]
    assert main(argv) == 0
    err = capsys.readouterr().err
    for i in (1, 2, 3):
        assert f": {i}/3 frames, " in err, err
    assert "\r" not in err and "\x1b" not in err


def test_help_shows_no_rest_markup(capsys):
    """Every command's --help (descriptions come from docstrings) reads as plain text."""
    from edgepose.cli import commands
    from edgepose.cli.bench import main as bench_main

    names = [m.__name__.rsplit(".", 1)[1] for m in commands()]
    assert {"infer", "eval", "info", "convert", "bench"} <= set(names)
    for argv in [["--help"]] + [[name, "--help"] for name in names]:
        assert main(argv) == 0
        text = capsys.readouterr().out
        assert "usage:" in text and "``" not in text and not re.search(r":[a-z]+:`", text), (argv, text)
    assert bench_main(["--help"]) == 0
    assert "``" not in capsys.readouterr().out
