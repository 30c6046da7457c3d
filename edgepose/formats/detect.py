"""Tell a model file's kind by its content: ONNX, TensorRT engine, TAO ``.etlt`` or unknown.

The suffix is never trusted (``model.engine`` may be an ONNX file and ``model.onnx`` an engine); it
only helps to word an error message. Only the first bytes are read.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Dict, Union

from ..errors import BackendUnavailable, ModelFormatError

__all__ = ["ModelFormat", "ModelSource", "check_onnx_loadable", "detect_format", "file_sha256", "onnx_metadata",
           "parse_onnx", "read_head", "source_name", "require_onnx"]

ModelSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]
"""A model given as a path or as the model file's bytes."""

_HEAD = 64  # bytes read to decide

# A serialized TensorRT plan starts with this tag ("ftrt" for TensorRT 8 and later).
_TRT_MAGIC = (b"ftrt", b"ptrt")

# Tags of the fields of onnx.ModelProto (field number << 3 | wire type) that may follow ir_version:
# producer_name 2, producer_version 3, domain 4, model_version 5 (varint), doc_string 6, graph 7,
# opset_import 8, metadata_props 14, training_info 20 (two-byte tag 0xa2 0x01), functions 25 (0xca 0x01).
_ONNX_NEXT_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA})


class ModelFormat(str, Enum):
    """The kinds of model file edgepose knows."""

    ONNX = "onnx"
    ENGINE = "engine"  # a serialized TensorRT plan (possibly behind an Ultralytics-style JSON header)
    ETLT = "etlt"  # TAO's encrypted export: int32 name length, name, 16-byte nonce, ciphertext
    UNKNOWN = "unknown"


def source_name(model: ModelSource) -> str:
    """How to name ``model`` in messages: its path, or ``<N bytes>``."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return f"<{len(model)} bytes>"
    return os.fspath(model)


def read_head(model: ModelSource, size: int = _HEAD) -> bytes:
    """The first ``size`` bytes of ``model``.

    Raises:
        ModelFormatError: the path does not exist, is a directory or cannot be read.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model[:size])
    if not isinstance(model, (str, os.PathLike)):
        raise ModelFormatError(f"model: expected a path or bytes, got {type(model).__name__}")
    path = Path(model)
    if not path.exists():
        raise ModelFormatError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFormatError(f"model path is a directory, not a model file: {path}")
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as e:
        raise ModelFormatError(f"cannot read model file {path}: {e.strerror or e}") from e


def file_sha256(path: Union[str, os.PathLike[str]]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks.

    Raises:
        ModelFormatError: the file cannot be read.
    """
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as e:
        raise ModelFormatError(f"cannot read {os.fspath(path)}: {e.strerror or e}") from None
    return digest.hexdigest()


def _varint(buf: bytes, pos: int):
    """Decode a protobuf varint at ``pos``: (value, next position), or (None, pos) when cut short."""
    value, shift = 0, 0
    while pos < len(buf) and shift < 64:
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7
    return None, pos


def _looks_onnx(head: bytes) -> bool:
    # Every exporter writes ir_version (field 1, varint: tag 0x08) first; its value is small and the
    # next byte starts another ModelProto field. A graph-first file (0x3a) is accepted as well.
    if len(head) < 3:
        return False
    if head[0] == 0x3A:
        return True
    if head[0] != 0x08:
        return False
    ir, pos = _varint(head, 1)
    return ir is not None and 1 <= ir <= 64 and pos < len(head) and head[pos] in _ONNX_NEXT_TAGS


def _looks_engine(head: bytes) -> bool:
    if head[:4] in _TRT_MAGIC:
        return True
    # Ultralytics writes uint32 little-endian JSON length, the JSON, then the plan.
    if len(head) >= 5 and head[4:5] == b"{":
        n = int.from_bytes(head[:4], "little")
        return 4 + n + 4 <= len(head) and head[4 + n: 8 + n] in _TRT_MAGIC
    return False


def _looks_etlt(head: bytes) -> bool:
    # int32 LE name length N, N bytes of input-node name, 16-byte nonce, ciphertext. N == 0 for an
    # ONNX payload (an ONNX file never starts with a zero byte); a UFF payload names its input node.
    if len(head) < 4 + 16 + 1:
        return False
    n = int.from_bytes(head[:4], "little")
    if n == 0:
        return True
    if n > len(head) - 4 - 16 - 1 or n > 255:
        return False
    name = head[4: 4 + n]
    return all(32 < c < 127 for c in name)


def detect_format(model: ModelSource) -> ModelFormat:
    """The :class:`ModelFormat` of ``model`` (a path or bytes), judged by its first bytes.

    Raises:
        ModelFormatError: a path that does not exist or cannot be read, or an empty model.
    """
    head = read_head(model)
    if not head:
        raise ModelFormatError(f"model {source_name(model)} is empty")
    if _looks_engine(head):
        return ModelFormat.ENGINE
    if _looks_onnx(head):
        return ModelFormat.ONNX
    if _looks_etlt(head):
        return ModelFormat.ETLT
    # Content first, the suffix second: a damaged .etlt (say, a header length past the end) goes to the
    # .etlt reader, whose errors say what is wrong with it.
    if not isinstance(model, (bytes, bytearray, memoryview)) and Path(model).suffix.lower() == ".etlt":
        return ModelFormat.ETLT
    return ModelFormat.UNKNOWN


def parse_onnx(model: object, where: str = "model") -> object:
    """The ``onnx.ModelProto`` of ONNX bytes (a ModelProto is returned as it is).

    Raises:
        ModelFormatError: the bytes are not a parsable ONNX model (``where`` names the file).
    """
    if not isinstance(model, (bytes, bytearray, memoryview)):
        return model
    import onnx

    try:
        return onnx.load_from_string(bytes(model))
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelFormatError(f"{where}: not a valid ONNX model ({e}): truncated or corrupt file") from None


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def onnx_metadata(model: object, where: str = "model") -> Dict[str, str]:
    """The ``metadata_props`` of an ONNX model (path, bytes or ModelProto) as text.

    ONNX stores them as protobuf strings, which a damaged or careless exporter may fill with bytes
    that are not UTF-8 (protobuf then hands out ``bytes``, ONNX Runtime raises UnicodeDecodeError):
    those are decoded with U+FFFD replacement characters, so a stray byte in a note does not make
    the model unusable, while a damaged ``edgepose_spec`` fails as invalid JSON, naming the key.

    Raises:
        ModelFormatError: not a parsable ONNX model.
    """
    if isinstance(model, (str, os.PathLike)):
        read_head(model, 1)  # a missing or unreadable path is a ModelFormatError naming it
        model = Path(model).read_bytes()
    proto = parse_onnx(model, where)
    return {_text(p.key): _text(p.value) for p in proto.metadata_props}  # type: ignore[attr-defined]


def check_onnx_loadable(model: object, where: str = "model") -> None:
    """Check that ONNX bytes (or a ModelProto) hold a model a runtime can load, before they are written.

    Protobuf parses most damaged bytes (a bit flip in an .etlt payload, a truncated file) into some
    model; this runs ONNX's checker and, when onnxruntime is installed, opens a CPU session, which
    also refuses what the checker lets through (an attribute value no operator knows, shapes that
    do not fit). Weights that changed but still fit are not detected here (see ``model_sha256``).

    Raises:
        ModelFormatError: naming ``where`` and the first problem found.
    """
    import contextlib
    import io

    import onnx

    proto = parse_onnx(model, where)
    try:
        onnx.checker.check_model(proto)  # type: ignore[arg-type]
    except Exception as e:  # ValidationError, and UnicodeDecodeError for damaged strings
        raise ModelFormatError(f"{where}: not a loadable ONNX model ({str(e).splitlines()[0][:200]}): a corrupt "
                               "file, or for an .etlt a wrong key") from None
    try:
        import onnxruntime as ort
    except ImportError:
        return
    data = model if isinstance(model, (bytes, bytearray, memoryview)) else proto.SerializeToString()  # type: ignore
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # the error comes back as the exception, not as log lines
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        # onnxruntime prints its own "EP Error ... retrying" lines for some failures: keep them off the terminal.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ort.InferenceSession(bytes(data), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's own exception types
        raise ModelFormatError(f"{where}: not a loadable ONNX model (onnxruntime: {str(e).splitlines()[0][:200]}): "
                               "a corrupt file") from None


def require_onnx(model: ModelSource, backend: str) -> None:
    """Raise a clear error unless ``model`` is an ONNX file that ``backend`` can load.

    Raises:
        BackendUnavailable: a TensorRT engine (it needs the TensorRT backend).
        ModelFormatError: a TAO ``.etlt`` (it must be decrypted first: :func:`edgepose.backends.create`
            and :class:`edgepose.EdgePose` do that in memory) or an unknown file.
    """
    fmt = detect_format(model)
    where = source_name(model)
    if fmt is ModelFormat.ONNX:
        return
    if fmt is ModelFormat.ENGINE:
        raise BackendUnavailable(
            f"{where} is a serialized TensorRT engine; the {backend} backend runs ONNX models only. Run it with "
            "backend='tensorrt' (needs an NVIDIA GPU and pip install tensorrt cuda-python), or pass the ONNX "
            "model the engine was built from."
        )
    if fmt is ModelFormat.ETLT:
        raise ModelFormatError(
            f"{where} is an encrypted TAO .etlt model; the {backend} backend takes the decrypted model. Open it "
            "with edgepose.EdgePose(path, key=...) or edgepose.backends.create(path, key=...), which decrypt it "
            "in memory, or decrypt it with edgepose.formats.read_etlt / `edgepose convert`."
        )
    hint = ""
    suffix = "" if isinstance(model, (bytes, bytearray, memoryview)) else Path(model).suffix.lower()
    if suffix == ".tlt":
        hint = " (.tlt training checkpoints cannot be run; export the model to ONNX with TAO)"
    raise ModelFormatError(
        f"{where} is not a model edgepose recognises (expected ONNX, a TensorRT engine or a TAO .etlt; "
        f"it starts with bytes {read_head(model, 8).hex(' ')}){hint}"
    )
