"""Fuzz the file readers: random and mutated bytes give an edgepose exception (EdgePoseError), never
another exception type. Readers: the .etlt / .tlt container, ONNX detection, parsing, metadata and
the loadability check, calibration caches, spec JSON and engine sidecars.

The "ci" hypothesis profile (tests/conftest.py) derandomizes the examples, so a run is reproducible.
Seeds are real files: a small pose-like ONNX model (test_spec.tiny_model), its .etlt, a real cache
and real sidecar/spec JSON, each mutated by byte flips, insertions and truncation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("cryptography")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_spec import tiny_model  # noqa: E402

from edgepose.errors import EdgePoseError  # noqa: E402
from edgepose.formats.calib import CalibrationCache  # noqa: E402
from edgepose.formats.detect import check_onnx_loadable, detect_format, onnx_metadata, parse_onnx  # noqa: E402
from edgepose.formats.engine import read_sidecar, sidecar_path  # noqa: E402
from edgepose.formats.etlt import decrypt_tlt, pack_etlt, read_etlt  # noqa: E402
from edgepose.spec import ModelSpec  # noqa: E402

ONNX = tiny_model(metadata={"edgepose_spec": '{"scale": 0.5}', "input_layout": "NHWC"})
NONCE = bytes(range(16))
ETLT = pack_etlt(ONNX, "k", nonce=NONCE)
CACHE = b"TRT-8601-EntropyCalibration2\ninput_1:0: 3c010a14\nconv1/BiasAdd:0: 3d4ccccd\nheat: 0\n"
SPEC = json.dumps(ModelSpec.bodyposenet().to_dict()).encode()
SIDECAR = json.dumps({"edgepose_engine": 1, "spec": ModelSpec.bodyposenet().to_dict(),
                      "build": {"tensorrt": "10.3.0", "precision": "fp16", "source_sha256": "0" * 64},
                      "engine_sha256": ""}).encode()
FUZZ = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(FUZZ, max_examples=25)  # each call derives a key (PBKDF2) or opens an ONNX Runtime session


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few byte flips, insertions, deletions and possibly a cut."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos:pos + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


def _only_edgepose_errors(call, *args) -> None:
    try:
        call(*args)
    except EdgePoseError:
        pass


def _bytes_or_mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=400), mutated(seed))


@SLOW
@given(_bytes_or_mutated(ETLT), st.sampled_from(["k", "", "wrong"]))
@example(ETLT, "")  # the probe's case: an empty key
def test_etlt_reader(data: bytes, key: str) -> None:
    _only_edgepose_errors(read_etlt, data, key)


@SLOW
@given(_bytes_or_mutated(ETLT[4:]))
def test_tlt_reader(data: bytes) -> None:
    _only_edgepose_errors(decrypt_tlt, data, "k")


@FUZZ
@given(_bytes_or_mutated(ONNX))
def test_onnx_detection_parse_and_metadata(data: bytes) -> None:
    _only_edgepose_errors(detect_format, data)
    _only_edgepose_errors(parse_onnx, data, "m.onnx")
    _only_edgepose_errors(onnx_metadata, data, "m.onnx")


@SLOW
@given(mutated(ONNX))
def test_onnx_loadability_check(data: bytes) -> None:
    _only_edgepose_errors(check_onnx_loadable, data, "m.onnx")


CACHE_LINES = st.one_of(
    # A header of any length (Python's int() takes at most 4300 digits) over a valid line...
    (st.sampled_from([0, 1, 9, 10, 4300, 4301, 6000]) | st.integers(0, 6000)).map(
        lambda n: "TRT-" + "1" * n + "-EntropyCalibration2\na: 3c010a14\n"),
    # ... and a valid header over a line whose value is almost hex.
    (st.sampled_from(["-1", "+3c", "-0", "0x3c", "3c_01", "1ffffffff", "", " "])
     | st.text(alphabet="0123456789abcdefABx-+_ .:", max_size=12)).map(
        lambda v: f"TRT-8601-EntropyCalibration2\ninput_1:0: {v}\n"))


@FUZZ
@given(st.one_of(_bytes_or_mutated(CACHE), st.text(max_size=200), CACHE_LINES))
@example("TRT-8601-EntropyCalibration2\ninput_1:0: -1\n")  # the probe's cases
@example("TRT-" + "9" * 5000 + "-EntropyCalibration2\n")
def test_calibration_cache_parser(data) -> None:
    _only_edgepose_errors(CalibrationCache.parse, data, "cal.bin")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(10**300, 10**400) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
FIELDS = [f for f in ModelSpec.bodyposenet().to_dict()]
# Valid JSON nested deeper than Python's parser recurses (about 1000 levels).
DEEP_JSON = st.integers(1, 4000).map(lambda n: ("[" * n + "]" * n).encode())


@FUZZ
@given(st.one_of(_bytes_or_mutated(SPEC), st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4)
                 .map(lambda d: json.dumps(d).encode()), DEEP_JSON))
@example(b'{"scale": 1' + b"0" * 400 + b"}")  # an int too large for a float
@example(b"[" * 100_000 + b"]" * 100_000)
def test_spec_json(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("spec") / "spec.json"
    path.write_bytes(data)
    _only_edgepose_errors(ModelSpec.from_json, path)


@FUZZ
@given(st.one_of(_bytes_or_mutated(SIDECAR), DEEP_JSON,
                 st.fixed_dictionaries({"edgepose_engine": st.just(1)},
                                       optional={"spec": JSON_VALUES | st.dictionaries(st.sampled_from(FIELDS),
                                                                                        JSON_VALUES, max_size=3),
                                                 "build": JSON_VALUES, "engine_sha256": JSON_VALUES})
                 .map(lambda d: json.dumps(d).encode())))
@example(b'{"edgepose_engine": 1, "spec": {}, "build": [1, 2]}')  # the probe's case
def test_engine_sidecar(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    engine = tmp_path_factory.mktemp("engine") / "pose.engine"
    plan = b"ftrt" + bytes(64)
    engine.write_bytes(plan)
    sidecar_path(engine).write_bytes(data)
    _only_edgepose_errors(read_sidecar, engine, plan)


def test_seeds_are_what_they_claim(tmp_path: Path) -> None:
    """The unmutated seeds read without error, so the fuzzers start from real files."""
    assert read_etlt(ETLT, "k").plaintext == ONNX
    assert CalibrationCache.parse(CACHE).scales["heat"] == 0.0
    check_onnx_loadable(ONNX, "tiny.onnx")
    assert onnx_metadata(ONNX)["input_layout"] == "NHWC"
    path = tmp_path / "spec.json"
    path.write_bytes(SPEC)
    assert ModelSpec.from_json(path) == ModelSpec.bodyposenet()
    engine = tmp_path / "pose.engine"
    engine.write_bytes(b"ftrt")
    sidecar_path(engine).write_bytes(SIDECAR)
    assert read_sidecar(engine, b"ftrt").spec["input_name"] == "input_1:0"
