"""NVIDIA TAO's encrypted model files: ``.etlt`` exports and ``.tlt`` checkpoints.

Layout of an ``.etlt`` file (all of it; there is no trailer)::

    int32 little-endian N | N bytes: UFF input-node name (N == 0 for ONNX) | 16-byte nonce | ciphertext

A ``.tlt`` file is the same without the ``4 + N`` header: ``nonce | ciphertext``.

The cipher is AES-256 in CTR mode. The nonce is the initial 128-bit counter block, the key is
stretched from the key string (``nvidia_tlt`` for NGC's deployable models) with PBKDF2. There is no
MAC and no padding, so the ciphertext is exactly as long as the plaintext and a wrong key yields
garbage without any error: the plaintext is therefore *validated* (its first bytes, then a parse of
the ONNX graph) and a failure is reported as "wrong key or not a TAO model file".

The parameters (:data:`CIPHER`) live in this one place. The issue that asked for this module said
they were unconfirmed; ``shared/design/tao_bodyposenet.md`` ("The .etlt container") now records them
as verified against three real NGC ``.etlt`` files (two ONNX payloads, one UFF payload), including the
known-answer derived key for ``nvidia_tlt`` that ``tests/test_etlt.py`` checks. NVIDIA's files cannot
be shipped, so the tests pack their own.

The decrypted model only ever lives in memory: :func:`read_etlt` returns bytes that a backend loads
directly (ONNX Runtime and TensorRT both accept a model as bytes).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Optional, Union

from ..errors import BackendUnavailable, DecryptionError, ModelFormatError
from .detect import ModelSource, source_name

__all__ = [
    "CIPHER",
    "DEFAULT_KEY",
    "KEY_ENV_VARS",
    "NONCE_SIZE",
    "EtltModel",
    "Payload",
    "decrypt_tlt",
    "derive_key",
    "encrypt_tlt",
    "pack_etlt",
    "read_etlt",
    "resolve_key",
    "write_etlt",
]

DEFAULT_KEY = "nvidia_tlt"
"""The key of NVIDIA's published (NGC) TAO models."""

KEY_ENV_VARS = ("EDGEPOSE_KEY", "TAO_KEY")
"""Environment variables read, in order, when no key is passed."""

NONCE_SIZE = 16
MAX_NAME_LENGTH = 4096
"""A UFF input-node name longer than this means the file is not an ``.etlt`` (or is corrupt)."""


@dataclass(frozen=True)
class _Cipher:
    """The cipher parameters, in one place (see the module docstring for where they come from)."""

    kdf_hash: str = "sha256"  # PBKDF2-HMAC-SHA256
    iterations: int = 100_000
    key_size: int = 32  # AES-256
    salt: bytes = bytes.fromhex("cb3cdc2e858689da908563056a00dbed09ac076c785543c4610f06d31b53a732")
    # Known answer (tao_bodyposenet.md): the derived key for ``nvidia_tlt``.
    known_key: str = DEFAULT_KEY
    known_answer: bytes = bytes.fromhex("ea82d654e0bf5d97af42c4dcd6bff6cc69143a97e343b6ae8d12c6bb18be5410")


CIPHER = _Cipher()
"""AES-256-CTR with a PBKDF2-HMAC-SHA256 key (100000 iterations, fixed salt); the nonce is the
initial counter block, incremented big-endian over all 128 bits (``cryptography``'s ``modes.CTR``)."""


class Payload(str, Enum):
    """What an ``.etlt`` carries."""

    ONNX = "onnx"
    UFF = "uff"


@dataclass(frozen=True)
class EtltModel:
    """A decrypted ``.etlt``: the payload kind, the UFF input name (empty for ONNX) and the plaintext.

    The plaintext is held in memory only; pass it to a backend as bytes.
    """

    payload: Payload
    input_name: str
    plaintext: bytes
    source: str

    def onnx_bytes(self) -> bytes:
        """The ONNX model, or a clear error for a UFF payload (TensorRT 10 has no UFF parser).

        Raises:
            ModelFormatError: the payload is UFF.
        """
        if self.payload is Payload.UFF:
            raise ModelFormatError(
                f"{self.source} holds a UFF graph (input node {self.input_name!r}), an old TAO export format: "
                "TensorRT 10 removed the UFF parser and ONNX Runtime cannot read UFF. Re-export the model to "
                "ONNX with TAO 5 or later (tao model <task> export), or use the ONNX deployable of the model "
                "from NGC; tao-converter with TensorRT 8.x can still build an engine from this file."
            )
        return self.plaintext


def _crypto():
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
    except ImportError as e:
        raise BackendUnavailable(
            "TAO .etlt/.tlt files need the cryptography package: pip install cryptography "
            "(or: pip install 'edgepose[etlt]')"
        ) from e
    return hashes, Cipher, algorithms, modes, PBKDF2HMAC


def _check_key(key: object) -> str:
    """``key`` itself, or a DecryptionError (a ValueError) for an empty or non-string key."""
    if not isinstance(key, str) or not key:
        what = "the key is empty" if key == "" else f"expected a string, got {type(key).__name__}"
        raise DecryptionError(f"key: {what}; pass the model's key (NGC's models: {DEFAULT_KEY}), or leave --key / "
                              "key= out to use $EDGEPOSE_KEY, $TAO_KEY or the default")
    return key


def resolve_key(key: Optional[str] = None) -> str:
    """``key`` if given, else ``$EDGEPOSE_KEY``, else ``$TAO_KEY``, else :data:`DEFAULT_KEY`.

    Raises:
        DecryptionError: ``key`` is empty or not a string.
    """
    if key is not None:
        return _check_key(key)
    for var in KEY_ENV_VARS:
        value = os.environ.get(var)
        if value:
            return value
    return DEFAULT_KEY


def derive_key(key: str) -> bytes:
    """The 32-byte AES key PBKDF2 stretches from the key string ``key``."""
    _check_key(key)
    hashes, _, _, _, PBKDF2HMAC = _crypto()
    kdf = PBKDF2HMAC(algorithm=getattr(hashes, CIPHER.kdf_hash.upper())(), length=CIPHER.key_size,
                     salt=CIPHER.salt, iterations=CIPHER.iterations)
    return kdf.derive(key.encode("utf-8"))


def _ctr(aes_key: bytes, nonce: bytes, data: bytes) -> bytes:
    # CTR is its own inverse: the same call encrypts and decrypts. TAO processes the stream in
    # 1024-byte chunks; the counter runs on across chunks, so one call over the whole buffer is equal.
    _, Cipher, algorithms, modes, _ = _crypto()
    ctx = Cipher(algorithms.AES(aes_key), modes.CTR(nonce)).encryptor()
    return ctx.update(data) + ctx.finalize()


def encrypt_tlt(plaintext: bytes, key: Optional[str] = None, *, nonce: Optional[bytes] = None) -> bytes:
    """``nonce | ciphertext`` of ``plaintext`` (the ``.tlt`` body; ``.etlt`` adds its header).

    Args:
        plaintext: the model bytes.
        key: the key string (see :func:`resolve_key`).
        nonce: 16 bytes; random (``os.urandom``) when None. Pass one only for reproducible files.
    """
    nonce = os.urandom(NONCE_SIZE) if nonce is None else bytes(nonce)
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce: expected {NONCE_SIZE} bytes, got {len(nonce)}")
    return nonce + _ctr(derive_key(resolve_key(key)), nonce, bytes(plaintext))


def decrypt_tlt(data: ModelSource, key: Optional[str] = None) -> bytes:
    """Decrypt a ``.tlt`` file (``nonce | ciphertext``, no header) into memory.

    The plaintext of a TAO checkpoint is a Keras HDF5 file, a zip archive or an ONNX model; anything
    else means a wrong key. Returns the plaintext.

    Raises:
        ModelFormatError: the file is missing, empty or too short; DecryptionError: wrong key.
    """
    raw, where = _read(data)
    if len(raw) <= NONCE_SIZE:
        raise ModelFormatError(f"{where}: truncated TAO .tlt file ({len(raw)} bytes; a 16-byte nonce and a "
                               "ciphertext are expected)")
    plain = _ctr(derive_key(resolve_key(key)), raw[:NONCE_SIZE], raw[NONCE_SIZE:])
    if not (plain.startswith((b"\x89HDF\r\n\x1a\n", b"PK\x03\x04")) or _onnx_head(plain)):
        raise DecryptionError(f"{where}: decryption gave no HDF5, zip or ONNX data: wrong key or not a TAO model "
                              "file (pass --key / key=, or set EDGEPOSE_KEY)")
    return plain


def pack_etlt(onnx_model: Union[bytes, os.PathLike[str], str], key: Optional[str] = None, *,
              nonce: Optional[bytes] = None, input_name: str = "") -> bytes:
    """An ``.etlt`` file's bytes for a model (ONNX bytes or a path to an ONNX file).

    Args:
        onnx_model: the plaintext model.
        key: the key string (see :func:`resolve_key`).
        nonce: 16 bytes, random when None.
        input_name: the UFF input-node name stored in the header; empty (the default) for ONNX. A
            non-empty name writes a UFF-style header (for tests of old files).
    """
    if isinstance(onnx_model, (str, os.PathLike)):
        onnx_model = Path(onnx_model).read_bytes()
    name = input_name.encode("utf-8")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"input_name: at most {MAX_NAME_LENGTH} bytes, got {len(name)}")
    return struct.pack("<i", len(name)) + name + encrypt_tlt(bytes(onnx_model), key, nonce=nonce)


def write_etlt(path: Union[str, os.PathLike[str]], onnx_model: Union[bytes, os.PathLike[str], str],
               key: Optional[str] = None, **kwargs: object) -> Path:
    """Write :func:`pack_etlt`'s bytes to ``path`` and return it."""
    path = Path(path)
    path.write_bytes(pack_etlt(onnx_model, key, **kwargs))  # type: ignore[arg-type]
    return path


def _read(data: ModelSource):
    where = source_name(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), where
    if not isinstance(data, (str, os.PathLike)):
        raise ModelFormatError(f"model: expected a path or bytes, got {type(data).__name__}")
    path = Path(data)
    if not path.is_file():
        raise ModelFormatError(f"model file not found: {path}" if not path.exists()
                               else f"model path is not a file: {path}")
    try:
        return path.read_bytes(), where
    except OSError as e:
        raise ModelFormatError(f"cannot read model file {path}: {e.strerror or e}") from e


def _onnx_head(plain: bytes) -> bool:
    # ModelProto starts with ir_version (tag 0x08, a small varint), then another field: TAO writes
    # producer_name (0x12) next. A UFF MetaGraph starts 08 01 10 (its own field 2 is a varint).
    from .detect import _looks_onnx

    return _looks_onnx(plain[:64]) and not plain.startswith(b"\x08\x01\x10")


def _uff_head(plain: bytes) -> bool:
    return plain.startswith(b"\x08\x01\x10")


def _check_onnx(plain: bytes, where: str) -> None:
    """Parse the plaintext as ONNX and require a graph with nodes and an opset (``onnx`` accepts many
    byte strings, including a UFF graph, as an empty model)."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is in the etlt extra
        return  # the first bytes were checked; the backend's own parser reports the rest
    try:
        model = onnx.load_from_string(plain)
    except Exception as e:  # protobuf's DecodeError and friends
        raise DecryptionError(f"{where}: the decrypted payload is not a valid ONNX model ({e}): wrong key or "
                              "a corrupt / truncated TAO model file") from None
    if not model.graph.node or not model.opset_import:
        raise DecryptionError(f"{where}: the decrypted payload has no ONNX graph: wrong key or not a TAO model file")


def read_etlt(model: ModelSource, key: Optional[str] = None, *, validate: bool = True) -> EtltModel:
    """Decrypt an ``.etlt`` (path or bytes) in memory and tell its payload (ONNX or UFF).

    Args:
        model: the file or its bytes.
        key: the key string; None reads ``$EDGEPOSE_KEY`` / ``$TAO_KEY`` or uses ``nvidia_tlt``.
        validate: parse an ONNX payload fully (a wrong key is caught by the first bytes already;
            this also catches a truncated or corrupt file).

    Raises:
        ModelFormatError: missing, empty or truncated file, a header whose name length points past
            the end. DecryptionError: wrong key or not a TAO file.
    """
    raw, where = _read(model)
    if not raw:
        raise ModelFormatError(f"{where}: the .etlt file is empty")
    if len(raw) < 4:
        raise ModelFormatError(f"{where}: truncated .etlt file ({len(raw)} bytes; the header alone is 4)")
    (n,) = struct.unpack_from("<i", raw)
    if n < 0 or n > MAX_NAME_LENGTH:
        raise ModelFormatError(f"{where}: not a TAO .etlt file (header name length {n} is outside "
                               f"0..{MAX_NAME_LENGTH})")
    body = 4 + n
    if body + NONCE_SIZE > len(raw):
        raise ModelFormatError(f"{where}: header length {n} points past the end of the file ({len(raw)} bytes): "
                               "truncated or not a TAO .etlt file")
    if body + NONCE_SIZE == len(raw):
        raise ModelFormatError(f"{where}: truncated .etlt file: the header and nonce are there, the model is not")
    try:
        name = raw[4:body].decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFormatError(f"{where}: not a TAO .etlt file (the header's input-node name is not text)") from None
    nonce = raw[body:body + NONCE_SIZE]
    plain = _ctr(derive_key(resolve_key(key)), nonce, raw[body + NONCE_SIZE:])
    # Tell the payload by its first bytes, not by N (the design note's advice).
    if _uff_head(plain):
        payload = Payload.UFF
    elif _onnx_head(plain):
        payload = Payload.ONNX
        if validate:
            _check_onnx(plain, where)
    else:
        raise DecryptionError(f"{where}: wrong key or not a TAO model file (the decrypted data is neither ONNX nor "
                              "UFF); pass the model's key with --key / key= or set EDGEPOSE_KEY (NGC models: "
                              f"{DEFAULT_KEY})")
    return EtltModel(payload, name, plain, where)
