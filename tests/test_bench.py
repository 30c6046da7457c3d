"""``edgepose bench`` / ``edgepose-bench`` and :mod:`edgepose.bench`, run in-process on real data.

The pipeline runs use the smallest real model at a small input and a handful of frames; the JSON
report is checked for its documented keys (docs/bench.md) and for every figure being a finite,
positive number (zero only where it means something: no persons found, no memory growth). No test
asserts a speed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator, Tuple

import numpy as np
import pytest
from conftest import COCO_MINI, GOLDEN, MODELS, need

from edgepose.backends import REGISTRY, BackendEntry
from edgepose.bench import SCHEMA, STAGES, percentiles, synthetic_crowd
from edgepose.cli import main
from edgepose.decode import Decoder
from edgepose.formats.detect import ModelFormat

STATS = {"median", "p90", "p99", "mean"}
DEVICE_KEYS = {"cpu", "cores", "usable_cores", "gpus", "cuda", "os", "python", "numpy", "opencv", "edgepose"}
MEMORY_KEYS = {"peak_rss_mib", "rss_start_mib", "rss_end_mib", "rss_growth_mib", "python_growth_kib",
               "python_peak_kib", "steady"}
# Figures that may be 0 (nothing found, nothing grew, no warm-up) or negative (memory given back).
MAY_BE_ZERO = {"persons", "persons_per_frame", "python_peak_kib", "warmup", "people"}
SIGNED = {"rss_growth_mib", "python_growth_kib"}


def _numbers(obj: Any, path: str = "") -> Iterator[Tuple[str, float]]:
    """Every number in a JSON value, with its dotted path (bools are not numbers here)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def _check_numbers(report: dict) -> None:
    for path, value in _numbers(report):
        assert math.isfinite(value), f"{path} = {value} is not finite"
        key = path.rsplit(".", 1)[-1].split("[")[0]
        if key in SIGNED:
            continue
        if key in MAY_BE_ZERO:
            assert value >= 0, f"{path} = {value} is negative"
        else:
            assert value > 0, f"{path} = {value} is not positive"


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def small_model() -> str:
    pytest.importorskip("onnxruntime", reason="the pipeline bench runs a model with ONNX Runtime")
    return str(need(MODELS / "tfpose_mobilenet_v2_small.onnx"))


def _bench(capsys: pytest.CaptureFixture, tmp_path: Path, *argv: str) -> Tuple[dict, str]:
    out = tmp_path / "bench.json"
    assert main(["bench", *argv, "--json", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    return json.loads(out.read_text()), table


def test_pipeline_report(small_model: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report, table = _bench(capsys, tmp_path, "--model", small_model, "-b", "onnxruntime", "--input", "184x216",
                           "--frames", "4",
                           "--warmup", "1", "--batch", "1,2", "--frame-size", "240x320")
    assert report["schema"] == SCHEMA and report["mode"] == "pipeline"
    assert DEVICE_KEYS <= set(report["device"])
    assert report["device"]["cores"] >= report["device"]["usable_cores"] >= 1
    assert report["model"]["source"] == "synthetic" and report["model"]["frame_size"] == [240, 320]
    assert [r["batch"] for r in report["runs"]] == [1, 2]
    for r in report["runs"]:
        assert r["backend"] == "onnxruntime" and r["backend_version"]
        assert r["providers"] == ["CPUExecutionProvider"] and r["precision"] == "fp32"
        assert r["input_size"] == [184, 216]
        assert set(r["latency_ms"]) == set(STAGES)
        assert all(set(p) == STATS for p in r["latency_ms"].values())
        assert set(r["frame_ms"]) == STATS
        assert r["frames"] == r["calls"] * r["batch"] >= 4
        # Each stage runs inside the total.
        lat = r["latency_ms"]
        for stage in ("preprocess", "inference", "decode"):
            assert lat[stage]["mean"] <= lat["total"]["mean"] + 1e-6
        assert r["fps"] == pytest.approx(r["frames"] / (lat["total"]["mean"] * r["calls"] / 1e3))
        assert MEMORY_KEYS <= set(r["memory"]) and isinstance(r["memory"]["steady"], bool)
        assert r["memory"]["peak_rss_mib"] >= r["memory"]["rss_end_mib"]
        assert r["ratios"]["decode_vs_inference"] == pytest.approx(lat["decode"]["median"]
                                                                   / lat["inference"]["median"])
    assert report["memory"]["peak_rss_mib"] > 0
    _check_numbers(report)
    # The table shows every stage of every run and the FPS.
    for stage in STAGES:
        assert table.count(stage) >= 2
    assert table.count("FPS") == 2 and report["device"]["cpu"] in table


def test_pipeline_on_real_images(small_model: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    src = need(COCO_MINI / "images")
    for name in ("000000000790.jpg", "000000030752.jpg"):
        (folder / name).write_bytes((src / name).read_bytes())
    report, _ = _bench(capsys, tmp_path, "--model", small_model, "--input", "184x216", "--frames", "3",
                       "--warmup", "1", "--images", str(folder))
    assert report["model"]["source"] == "images" and report["model"]["images"] == 2
    (run,) = report["runs"]
    # Real photos of people: the decoder finds someone in them.
    assert run["persons_per_frame"] > 0
    _check_numbers(report)


def test_decoder_only_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report, table = _bench(capsys, tmp_path, "--decoder-only", "--people", "0,1,10,50", "--frames", "5")
    assert report["mode"] == "decoder" and report["maps"]["input_size"] == [368, 552]
    runs = report["runs"]
    assert [r["people"] for r in runs] == [0, 1, 10, 50]
    for r in runs:
        assert r["source"] == "synthetic" and r["map_size"] == [46, 69] and r["layout"] == "NHWC"
        assert set(r["latency_ms"]) == {"decode"} and set(r["latency_ms"]["decode"]) == STATS
        assert MEMORY_KEYS <= set(r["memory"])
        # The rendered crowds are clean: each person decodes as one.
        assert r["persons"] == r["people"]
    assert report["ratios"]["decode_most_vs_fewest_people"] > 0
    _check_numbers(report)
    assert "50 people" in table


def test_decoder_only_stored_maps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = need(GOLDEN / "coco_000000196141_552x368_omz_hpe0001.npz")
    report, _ = _bench(capsys, tmp_path, "--decoder-only", "--maps", str(path), "--frames", "3")
    (run,) = report["runs"]
    assert run["source"] == "maps" and run["layout"] == "NCHW" and run["map_size"] == [46, 69]
    assert run["name"] == "omz_human_pose_estimation_0001" and run["persons"] >= 1
    _check_numbers(report)


def test_decoder_only_maps_of_another_size(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # A PAF at twice the heatmap's resolution (BodyPoseNet's shape): its stride is derived from the sizes.
    heat, _, _ = synthetic_crowd(3, (23, 35), 16)
    _, paf, _ = synthetic_crowd(3, (46, 70), 8)
    npz = tmp_path / "maps.npz"
    np.savez(npz, heatmap=heat[None], paf=paf[None])
    report, _ = _bench(capsys, tmp_path, "--decoder-only", "--maps", str(npz), "--stride", "16", "--frames", "2")
    (run,) = report["runs"]
    assert run["heatmap_stride"] == 16 and run["paf_stride"] == 8 and run["batch"] == 1
    assert run["persons"] == 3


@pytest.mark.parametrize("argv, needle", [
    (["--backend", "nosuchrt"], "unknown backend"),
    (["--backend", "fakert"], "not installed"),
])
def test_backend_errors_are_one_line(small_model: str, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture, argv: list, needle: str) -> None:
    # A registered backend whose runtime is missing here (as TensorRT is on a machine without it).
    monkeypatch.setitem(REGISTRY, "fakert", BackendEntry("fakert", "FakeBackend", (ModelFormat.ONNX,),
                                                         "fakert-runtime", lambda: False))
    assert main(["bench", "--model", small_model, *argv]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("edgepose bench: error: --backend") and needle in line


def test_backend_all_skips_missing(small_model: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(REGISTRY, "fakert", BackendEntry("fakert", "FakeBackend", (ModelFormat.ONNX,),
                                                         "fakert-runtime", lambda: False))
    report, _ = _bench(capsys, tmp_path, "--model", small_model, "--backend", "all", "--input", "184x216",
                       "--frames", "1", "--warmup", "0")
    runnable = [n for n, e in REGISTRY.items() if n != "fakert" and e.reason() is None]  # OpenVINO where installed
    assert [r["backend"] for r in report["runs"]] == runnable and "onnxruntime" in runnable
    assert {"backend": "fakert", "reason": "not installed (pip install fakert-runtime)"} in report["skipped"]
    assert "onnxruntime" not in [s["backend"] for s in report["skipped"]]


@pytest.mark.parametrize("argv, needle, code", [
    (["--model", "no/such/model.onnx"], "model file not found", 1),
    (["--frames", "5"], "--model is required", 1),
    (["--decoder-only", "--maps", "{missing}"], "file not found", 1),
    (["--decoder-only", "--maps", "{not_npz}"], "not an .npz file", 1),
    (["--decoder-only", "--maps", "{no_pair}"], "no '<prefix>heatmap'", 1),
    (["--decoder-only", "--maps", "{nan_maps}"], "NaN", 1),
    (["--decoder-only", "--images", "."], "not used with --decoder-only", 1),
    (["--decoder-only", "--input", "368"], "needs HEIGHTxWIDTH", 1),
    (["--decoder-only", "--people", "1,x"], "--people", 2),
    (["--batch", "0"], "--batch", 2),
    (["--warmup", "-1"], "--warmup", 2),
    (["--images", "{missing}", "--model", "{model}"], "not a folder", 1),
])
def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list, needle: str,
                                  code: int) -> None:
    """Exit 2 where argparse rejects a value (usage), 1 for a command line that fails later."""
    not_npz = tmp_path / "maps.npz"
    not_npz.write_text("not an archive")
    no_pair = tmp_path / "other.npz"
    np.savez(no_pair, x=np.zeros(3))
    nan_maps = tmp_path / "nan.npz"
    np.savez(nan_maps, heatmap=np.full((46, 69, 19), np.nan, np.float32), paf=np.zeros((46, 69, 38), np.float32))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")
    subst = {"missing": str(tmp_path / "missing"), "not_npz": str(not_npz), "no_pair": str(no_pair),
             "nan_maps": str(nan_maps), "model": str(model)}
    argv = [a.format(**subst) for a in argv]
    assert main(["bench", *argv]) == code
    assert needle in _one_error_line(capsys.readouterr().err)


def test_existing_json_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.json"
    out.write_text("keep")
    assert main(["bench", "--decoder-only", "--people", "1", "--frames", "1", "--json", str(out)]) == 1
    assert "already exists" in _one_error_line(capsys.readouterr().err) and out.read_text() == "keep"
    assert main(["bench", "--decoder-only", "--people", "1", "--frames", "1", "--json", str(out),
                 "--overwrite", "--no-progress"]) == 0
    assert json.loads(out.read_text())["runs"][0]["people"] == 1


def test_console_script_entry_is_the_bench_command(capsys: pytest.CaptureFixture) -> None:
    from edgepose.cli.bench import main as bench_main

    assert bench_main(["--decoder-only", "--people", "2", "--frames", "2", "--json", "-", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"][0]["persons"] == 2


def test_percentiles() -> None:
    p = percentiles(list(range(1, 101)))
    assert p == {"median": 50.5, "p90": pytest.approx(90.1), "p99": pytest.approx(99.01), "mean": 50.5}
    with pytest.raises(ValueError, match="no samples"):
        percentiles([])


def test_synthetic_crowd_is_deterministic_and_in_range() -> None:
    a = synthetic_crowd(20, seed=3)
    b = synthetic_crowd(20, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    heat, paf, kp = a
    assert heat.shape == (46, 69, 19) and paf.shape == (46, 69, 38) and kp.shape == (20, 18, 3)
    assert kp[..., 0].min() >= 0 and kp[..., 0].max() < 69 * 8
    assert kp[..., 1].min() >= 0 and kp[..., 1].max() < 46 * 8
    poses = Decoder().decode(heat, paf, heatmap_stride=8)
    assert len(poses) == 20
