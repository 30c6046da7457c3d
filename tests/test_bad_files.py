"""Bad model files, keys, caches, specs and outputs: each one clear edgepose error (one line from the
CLI), a frame that cannot be inferred skipped and reported, and nothing the user gave overwritten.

Models are the real sample models, some with their graph changed through onnx.helper (an output
multiplied by inf, a metadata string that is not UTF-8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import MODELS, need

pytest.importorskip("cryptography")
pytest.importorskip("onnx")

from edgepose.cli import main  # noqa: E402
from edgepose.errors import EdgePoseError, ModelFormatError  # noqa: E402
from edgepose.formats.calib import CalibrationCache  # noqa: E402
from edgepose.formats.etlt import derive_key, pack_etlt, read_etlt, resolve_key  # noqa: E402

SMALL = MODELS / "tfpose_mobilenet_v2_small.onnx"


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("EDGEPOSE_KEY", "TAO_KEY"):
        monkeypatch.delenv(var, raising=False)


def _error(capsys: pytest.CaptureFixture, code: int, expected: int = 1) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == expected and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


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
