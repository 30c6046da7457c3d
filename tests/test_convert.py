"""``edgepose convert``: .onnx -> .etlt -> .onnx byte for byte, keys from flags and the environment,
engine builds refused with one clear line where TensorRT cannot run, and every user error as one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import MODELS, need
from conftest import cli_error as _error

pytest.importorskip("cryptography")
pytest.importorskip("onnx")

from edgepose.backends import REGISTRY  # noqa: E402
from edgepose.cli import main  # noqa: E402
from edgepose.cli.convert import onnx_model_info  # noqa: E402
from edgepose.formats.etlt import read_etlt  # noqa: E402

THIN = MODELS / "tfpose_mobilenet_thin.onnx"
SMALL = MODELS / "tfpose_mobilenet_v2_small.onnx"
NO_TRT = not REGISTRY["tensorrt"].can_run()


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("EDGEPOSE_KEY", "TAO_KEY"):
        monkeypatch.delenv(var, raising=False)



def test_onnx_etlt_onnx_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = need(SMALL)
    etlt, back = tmp_path / "small.etlt", tmp_path / "small.onnx"
    assert main(["convert", str(src), "-o", str(etlt), "--key", "k9"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert read_etlt(etlt, "k9").plaintext == src.read_bytes()
    assert main(["convert", str(etlt), "-o", str(back), "-k", "k9"]) == 0
    assert back.read_bytes() == src.read_bytes()
    # The key from the environment; the default key nvidia_tlt when none is set.
    monkeypatch.setenv("EDGEPOSE_KEY", "k9")
    assert main(["convert", str(etlt), "-o", str(tmp_path / "env.onnx")]) == 0
    monkeypatch.delenv("EDGEPOSE_KEY")
    default = tmp_path / "default.etlt"
    assert main(["convert", str(src), "-o", str(default)]) == 0
    assert read_etlt(default, "nvidia_tlt").plaintext == src.read_bytes()


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = need(SMALL)
    etlt = tmp_path / "m.etlt"
    assert main(["convert", str(src), "-o", str(etlt), "-k", "right"]) == 0
    capsys.readouterr()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(src.read_bytes()[:5000])  # still looks like ONNX by its first bytes
    cases = [
        (["convert", str(truncated), "-o", str(tmp_path / "t.engine"), "--input-size", "368x432"],
         "truncated.onnx: not a valid ONNX model"),
        (["convert", str(truncated), "-o", str(tmp_path / "t.etlt")], "truncated.onnx: not a valid ONNX model"),
        (["convert", str(etlt), "-o", str(tmp_path / "x.onnx"), "-k", "wrong"], "wrong key or not a TAO model file"),
        (["convert", str(tmp_path / "nope.etlt"), "-o", str(tmp_path / "x.onnx")], "not found"),
        (["convert", str(src), "-o", str(etlt)], "already exists"),
        (["convert", str(src), "-o", str(tmp_path / "x.txt")], "unknown output type .txt"),
        (["convert", str(src), "-o", str(src)], "overwrite the input"),
        (["convert", str(src), "-o", str(tmp_path / "x.onnx")], "already ONNX"),
        (["convert", str(src), "-o", str(tmp_path / "x.etlt"), "--batch", "1,2,4"], "only used when building"),
        (["convert", str(src), "-o", str(tmp_path / "x.engine"), "-t", "int8", "--input-size", "368x432"],
         "int8 needs a calibration cache .* or a Q/DQ INT8 model"),
        (["convert", str(src), "-o", str(tmp_path / "x.onnx"), "-t", "int8"], "only -o \\*.engine builds take"),
        (["convert", str(src), "-o", str(tmp_path / "x.etlt"), "-t", "fp16"], "only -o \\*.engine builds take"),
        (["convert", str(src), "-o", str(tmp_path / "x.engine"), "-t", "fp32", "--calib", str(etlt)],
         "--calib is only used with -t int8"),
        (["convert", str(src), "-o", str(tmp_path / "x.engine"), "--calib", str(tmp_path / "none.txt"), "-t", "int8"],
         "--calib .*not found"),
    ]
    for argv, message in cases:
        line = _error(capsys, main(argv))
        assert line.startswith("edgepose convert: error:"), line
        assert re.search(message, line), (argv, line)
    # Usage errors (argparse) are one line with status 2.
    for bad in (["-p", "image,1x3,2x3"], ["-p", "image,1x368x432x3,4x368x432x3,2x368x432x3"], ["--batch", "4,2,1"],
                ["-t", "fp64"], ["--workspace", "0"]):
        code = main(["convert", str(src), "-o", str(tmp_path / "y.engine"), *bad])
        assert "error" in _error(capsys, code, expected=2)


def test_engine_calibration_cache_is_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "cal.txt"
    bad.write_text("TRT-8601-EntropyCalibration2\ninput_1:0: notahex\n")
    code = main(["convert", str(need(SMALL)), "-o", str(tmp_path / "m.engine"), "-t", "int8", "--calib", str(bad),
                 "--input-size", "368x432"])
    assert "line 2 is not 'tensor: hex scale'" in _error(capsys, code)


@pytest.mark.skipif(not NO_TRT, reason="TensorRT can run here: the build itself is tested in test_tensorrt.py")
def test_engine_build_without_tensorrt_says_what_to_install(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    etlt = tmp_path / "thin.etlt"
    assert main(["convert", str(need(THIN)), "-o", str(etlt)]) == 0
    capsys.readouterr()
    out = tmp_path / "thin.engine"
    code = main(["convert", str(etlt), "-o", str(out), "--input-size", "368x432", "--batch", "1,2,4"])
    line = _error(capsys, code)
    assert "needs TensorRT and a GPU" in line and ("pip install tensorrt" in line or "CUDA device" in line)
    assert not out.exists() and list(tmp_path.iterdir()) == [etlt]  # nothing half-written, no plaintext
    # A dynamic-size model without --input-size is refused before TensorRT is even looked for.
    code = main(["convert", str(etlt), "-o", str(out)])
    assert "axis 1 is dynamic; pass the input size" in _error(capsys, code)


def test_onnx_model_info_feeds_spec_detection() -> None:
    from edgepose.spec import ModelSpec

    info = onnx_model_info(need(THIN).read_bytes())
    assert [t.name for t in info.inputs] == ["image"]
    spec = ModelSpec.detect(info, name="tfpose_mobilenet_thin")
    assert (spec.heatmap_output, spec.paf_output, spec.heatmap_stride) == ("heatmap", "paf", 8)
    assert json.loads(spec.to_json())["name"] == "tfpose_mobilenet_thin"


def test_tao_converter_spellings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """tao-converter users type -e for the output and -w in bytes: -e works, and a byte count given
    as MiB (100000000 MiB = 95 TiB) is refused with a hint instead of reaching the builder."""
    from edgepose.cli.convert import _workspace

    etlt = tmp_path / "m.etlt"
    assert main(["convert", str(need(SMALL)), "-e", str(etlt), "-k", "k"]) == 0
    assert main(["convert", str(etlt), "-e", str(tmp_path / "m.onnx"), "-k", "k"]) == 0
    assert (tmp_path / "m.onnx").read_bytes() == need(SMALL).read_bytes()
    capsys.readouterr()
    for bad in ("100000000", "2TiB", "1073741824000000B", "0", "1.5GiB", "12XB"):
        code = main(["convert", str(etlt), "-o", str(tmp_path / "x.engine"), "-w", bad])
        line = _error(capsys, code, expected=2)
        assert "workspace" in line.lower() or "-w" in line, line
    code = main(["convert", str(etlt), "-o", str(tmp_path / "x.engine"), "-w", "100000000"])
    line = _error(capsys, code, expected=2)
    assert "bytes" in line and "MiB" in line and "1GiB" in line, line
    assert [_workspace(t) for t in ("1024", "1GiB", "1gib", "512MiB", "1073741824B", "1048576KiB", "1TiB")] == [
        1024, 1024, 1024, 512, 1024, 1024, 1048576]
    assert _workspace("1000000B") == 1  # rounded up to whole MiB
