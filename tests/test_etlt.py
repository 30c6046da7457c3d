"""The TAO .etlt / .tlt container: cipher known answer, exact byte layout, round trips, every broken
file as a clear edgepose error, and EdgePose on a packed .etlt giving the plain ONNX's poses."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need

pytest.importorskip("cryptography")
pytest.importorskip("onnx")

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

from edgepose.backends import REGISTRY  # noqa: E402
from edgepose.errors import DecryptionError, ModelFormatError  # noqa: E402
from edgepose.formats import ModelFormat, detect_format  # noqa: E402
from edgepose.formats.etlt import (  # noqa: E402
    CIPHER,
    DEFAULT_KEY,
    NONCE_SIZE,
    Payload,
    decrypt_tlt,
    derive_key,
    encrypt_tlt,
    pack_etlt,
    read_etlt,
    resolve_key,
    write_etlt,
)

THIN = MODELS / "tfpose_mobilenet_thin.onnx"
SMALL = MODELS / "tfpose_mobilenet_v2_small.onnx"
NONCE = bytes(range(100, 116))
# A UFF MetaGraph starts 08 01 10 (version 1, then field 2 as a varint); the rest is filler.
UFF = b"\x08\x01\x10\x01\x1a\x07input_1" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def small_onnx() -> bytes:
    return need(SMALL).read_bytes()


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("EDGEPOSE_KEY", "TAO_KEY"):
        monkeypatch.delenv(var, raising=False)


def test_known_answer_key_for_nvidia_tlt() -> None:
    # The derived key the design note records from real NGC files (tao_bodyposenet.md).
    assert derive_key("nvidia_tlt").hex() == "ea82d654e0bf5d97af42c4dcd6bff6cc69143a97e343b6ae8d12c6bb18be5410"
    assert CIPHER.known_answer == derive_key(CIPHER.known_key)
    assert derive_key("nvidia_tlt!") != derive_key("nvidia_tlt")
    assert DEFAULT_KEY == "nvidia_tlt"


def test_exact_byte_layout_onnx(small_onnx: bytes) -> None:
    blob = pack_etlt(small_onnx, "k1", nonce=NONCE)
    # int32 LE 0 | 16-byte nonce | ciphertext of exactly the plaintext's length
    assert blob[:4] == b"\x00\x00\x00\x00"
    assert blob[4:20] == NONCE
    assert len(blob) == 4 + NONCE_SIZE + len(small_onnx)
    # The ciphertext is AES-256-CTR of the plaintext with the nonce as the initial counter block,
    # computed here independently of the module.
    enc = Cipher(algorithms.AES(derive_key("k1")), modes.CTR(NONCE)).encryptor()
    assert blob[20:] == enc.update(small_onnx) + enc.finalize()
    # "nonce + ciphertext" is plaintext + 16 bytes, the figure.
    assert len(blob) - 4 == len(small_onnx) + 16


def test_round_trip_onnx_and_uff_headers(small_onnx: bytes) -> None:
    m = read_etlt(pack_etlt(small_onnx, "k1"), "k1")
    assert m.payload is Payload.ONNX and m.input_name == "" and m.plaintext == small_onnx
    assert m.onnx_bytes() == small_onnx
    uff = pack_etlt(UFF, "k2", nonce=NONCE, input_name="input_1")
    assert uff[:4] == struct.pack("<i", 7) and uff[4:11] == b"input_1" and uff[11:27] == NONCE
    assert len(uff) == 4 + 7 + 16 + len(UFF)
    u = read_etlt(uff, "k2")
    assert u.payload is Payload.UFF and u.input_name == "input_1" and u.plaintext == UFF
    with pytest.raises(ModelFormatError, match=r"UFF graph \(input node 'input_1'\).*TensorRT 10.*ONNX"):
        u.onnx_bytes()
    # Random nonces: two packs of the same model differ, and both decrypt.
    a, b = pack_etlt(small_onnx, "k1"), pack_etlt(small_onnx, "k1")
    assert a[4:20] != b[4:20] and read_etlt(a, "k1").plaintext == read_etlt(b, "k1").plaintext


def test_payload_told_by_content_not_header(small_onnx: bytes) -> None:
    # An ONNX payload behind a UFF-style header is still ONNX (the design note: not by N).
    m = read_etlt(pack_etlt(small_onnx, "k", input_name="input_1"), "k")
    assert m.payload is Payload.ONNX and m.input_name == "input_1"


def test_key_from_argument_env_or_default(monkeypatch: pytest.MonkeyPatch, small_onnx: bytes) -> None:
    assert resolve_key() == "nvidia_tlt"
    blob = pack_etlt(small_onnx)  # default key
    assert read_etlt(blob, "nvidia_tlt").plaintext == small_onnx
    monkeypatch.setenv("TAO_KEY", "tao-env")
    assert resolve_key() == "tao-env"
    monkeypatch.setenv("EDGEPOSE_KEY", "ep-env")
    assert resolve_key() == "ep-env" and resolve_key("explicit") == "explicit"
    assert read_etlt(pack_etlt(small_onnx, "ep-env")).plaintext == small_onnx
    with pytest.raises(ValueError, match="key"):
        resolve_key("")


def test_broken_files_are_clear_errors(tmp_path: Path, small_onnx: bytes) -> None:
    good = pack_etlt(small_onnx, "right", nonce=NONCE)
    cases = {
        "wrong key": (good, DecryptionError, "wrong key or not a TAO model file"),
        "empty": (b"", ModelFormatError, "empty"),
        "short header": (b"\x00\x00", ModelFormatError, "truncated"),
        "header, no nonce": (good[:12], ModelFormatError, "points past the end"),
        "nonce, no model": (good[:20], ModelFormatError, "truncated .etlt file: the header and nonce"),
        "truncated model": (good[:5000], DecryptionError, "not a valid ONNX model|no ONNX graph"),
        "length past the end": (struct.pack("<i", 3000) + b"input_1" + bytes(40), ModelFormatError,
                                "header length 3000 points past the end"),
        "negative length": (struct.pack("<i", -5) + bytes(40), ModelFormatError, "outside 0..4096"),
        "random bytes": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
                         ModelFormatError, "etlt"),
    }
    for label, (data, error, message) in cases.items():
        path = tmp_path / "model.etlt"
        path.write_bytes(data)
        key = "wrong" if label == "wrong key" else "right"
        with pytest.raises(error, match=message) as info:
            read_etlt(path, key)
        assert "model.etlt" in str(info.value), label  # the message names the file
    # A wrong key on a UFF file is caught too (its first bytes are not 08 01 10 any more).
    with pytest.raises(DecryptionError, match="wrong key"):
        read_etlt(pack_etlt(UFF, "a", input_name="input_1"), "b")
    with pytest.raises(ModelFormatError, match="not found"):
        read_etlt(tmp_path / "missing.etlt")


def test_detection_by_content_and_suffix(tmp_path: Path, small_onnx: bytes) -> None:
    blob = pack_etlt(small_onnx, "k")
    assert detect_format(blob) is ModelFormat.ETLT
    disguised = tmp_path / "model.onnx"  # the suffix lies; the content wins
    disguised.write_bytes(blob)
    assert detect_format(disguised) is ModelFormat.ETLT
    # Content that no rule recognises is still routed to the .etlt reader by its suffix, so the
    # error explains the broken header rather than "unknown format".
    broken = tmp_path / "broken.etlt"
    broken.write_bytes(struct.pack("<i", 1 << 20) + bytes(64))
    assert detect_format(broken) is ModelFormat.ETLT
    assert detect_format(struct.pack("<i", 1 << 20) + bytes(64)) is ModelFormat.UNKNOWN


def test_tlt_round_trip_and_wrong_key(tmp_path: Path) -> None:
    hdf5 = b"\x89HDF\r\n\x1a\n" + bytes(range(200))
    body = encrypt_tlt(hdf5, "k", nonce=NONCE)
    assert body[:16] == NONCE and len(body) == len(hdf5) + 16
    assert decrypt_tlt(body, "k") == hdf5
    with pytest.raises(DecryptionError, match="wrong key"):
        decrypt_tlt(body, "not-k")
    with pytest.raises(ModelFormatError, match="truncated"):
        decrypt_tlt(NONCE, "k")


def test_edgepose_on_etlt_gives_the_onnx_poses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from edgepose.pipeline import EdgePose

    frame = cv2.imread(str(need(COCO_MINI / "images" / "000000000790.jpg")))
    etlt = write_etlt(tmp_path / "tfpose_mobilenet_thin.etlt", need(THIN), "s3cret")
    before = sorted(os.listdir(tmp_path))
    with EdgePose(need(THIN), threads=2) as plain, EdgePose(str(etlt), key="s3cret", threads=2) as packed:
        a, b = plain.infer(frame), packed.infer(frame)
        assert packed.spec == plain.spec  # same preset found through the decrypted bytes
        sel = packed.backend.describe()["selection"]
        ov = REGISTRY["openvino"]  # auto takes OpenVINO before ONNX Runtime on a bf16 CPU where it is installed
        cpu = "openvino" if ov.reason() is None and ov.auto_why_not() is None else "onnxruntime"
        assert sel["decrypted"] == str(etlt) and sel["chosen"] == cpu
        assert "tensorrt" in sel["skipped"] and "cannot run here" in sel["skipped"]["tensorrt"]
    assert len(a) > 0
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert sorted(os.listdir(tmp_path)) == before  # the plaintext never touched the disk
    monkeypatch.setenv("EDGEPOSE_KEY", "s3cret")  # the key from the environment
    with EdgePose(str(etlt), threads=2) as env_keyed:
        np.testing.assert_array_equal(env_keyed.infer(frame).keypoints, a.keypoints)
    with pytest.raises(DecryptionError, match="tfpose_mobilenet_thin.etlt: wrong key"):
        EdgePose(str(etlt), key="guess")
