"""TensorRT INT8 calibration caches (the text format ``trtexec --calib`` and TAO's ``cal.bin`` use).

::

    TRT-<TensorRT version number: 8601 for 8.6.1, 100300 for 10.3.0>-EntropyCalibration2
    <tensor name>: <float32 scale as its IEEE-754 bit pattern in hex, no 0x>
    ...

One line per tensor; the tensor's dynamic range is ``scale * 127``. A scale is finite and not negative
(TensorRT never writes NaN, an infinity or a negative scale; the parser refuses them, naming the line).
A zero scale is accepted: it is what TensorRT writes for a tensor that was 0 on every calibration
input (a dead tensor). TensorRT reads only a cache whose
header names its own version and the calibrator's algorithm; a cache from another TensorRT version
(say TAO's, made with 8.x, used with 10.x) is otherwise ignored and the build silently falls back
to recalibration or fails. :func:`for_tensorrt` rewrites the header for the running version and warns
that the scales were computed by another version (they are usually still valid: the scales are
properties of the network's activations, not of TensorRT).
"""

from __future__ import annotations

import math
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Union

from ..errors import ModelFormatError
from .engine import trt_version_code

__all__ = ["CalibrationCache", "CalibrationCacheWarning", "ALGORITHMS", "for_tensorrt", "read_calibration_cache"]

ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
# A version number of at most 9 digits and a calibrator name of at most 64 characters (TensorRT's own
# are 4-6 digits and ALGORITHMS); anything longer is damage, not a cache.
_HEADER = re.compile(r"^TRT-(\d{1,9})-(\w{1,64})$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")  # no sign, no 0x, no underscores (which int(text, 16) would take)


class CalibrationCacheWarning(UserWarning):
    """A calibration cache was adapted (e.g. its header rewritten for another TensorRT version)."""


def _scale_from_hex(text: str) -> float:
    if not _HEX.match(text):
        raise ValueError(f"{text[:20]!r} is not a hex float32 bit pattern")
    bits = int(text, 16)
    if bits > 0xFFFFFFFF:
        raise ValueError(f"{text!r} is wider than a float32 bit pattern")
    return struct.unpack(">f", struct.pack(">I", bits))[0]


def _scale_to_hex(value: float) -> str:
    return format(struct.unpack(">I", struct.pack(">f", value))[0], "x")


@dataclass(frozen=True)
class CalibrationCache:
    """A parsed calibration cache.

    Attributes:
        version: the TensorRT version code in the header (e.g. 8601 for 8.6.1, 100300 for 10.3.0; see
            :func:`edgepose.formats.engine.trt_version_code`).
        algorithm: the calibrator, e.g. ``EntropyCalibration2``.
        scales: tensor name -> float32 scale, in file order.
    """

    version: int
    algorithm: str
    scales: Dict[str, float]

    @property
    def header(self) -> str:
        return f"TRT-{self.version}-{self.algorithm}"

    def dynamic_ranges(self) -> Dict[str, float]:
        """Tensor name -> dynamic range (``scale * 127``), what ``ITensor.dynamic_range`` takes."""
        return {name: s * 127.0 for name, s in self.scales.items()}

    def to_text(self) -> str:
        """The cache as TensorRT writes it (scales as the float32 bit pattern in lower-case hex)."""
        lines = [self.header] + [f"{name}: {_scale_to_hex(s)}" for name, s in self.scales.items()]
        return "\n".join(lines) + "\n"

    def to_bytes(self) -> bytes:
        return self.to_text().encode("utf-8")

    @classmethod
    def parse(cls, data: Union[str, bytes], where: str = "calibration cache") -> CalibrationCache:
        """Parse the text format.

        Raises:
            ModelFormatError: a missing or malformed header, a line that is not ``name: hex`` (naming
                the line), a scale that is NaN, infinite or negative (naming the line and the tensor),
                a duplicate tensor, or no tensors at all.
        """
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ModelFormatError(f"{where}: not a TensorRT calibration cache (not text)") from None
        lines = [ln.strip() for ln in data.splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines:
            raise ModelFormatError(f"{where}: empty calibration cache")
        m = _HEADER.match(lines[0])
        if not m:
            raise ModelFormatError(f"{where}: line 1 must be a header such as TRT-8601-EntropyCalibration2, got "
                                   f"{lines[0][:60]!r}")
        scales: Dict[str, float] = {}
        for i, line in enumerate(lines[1:], start=2):
            name, sep, value = line.rpartition(":")  # tensor names may contain ':' (input_1:0)
            name, value = name.strip(), value.strip()
            try:
                if not sep or not name:
                    raise ValueError("no 'name: value'")
                scale = _scale_from_hex(value)
            except ValueError as e:
                raise ModelFormatError(f"{where}: line {i} is not 'tensor: hex scale' ({e}): {line[:60]!r}") from None
            if not math.isfinite(scale) or scale < 0:
                raise ModelFormatError(f"{where}: line {i}: tensor {name!r} has scale {scale} ({value}); a scale "
                                       "must be finite and not negative")
            if name in scales:
                raise ModelFormatError(f"{where}: tensor {name!r} appears twice (line {i})")
            scales[name] = scale
        if not scales:
            raise ModelFormatError(f"{where}: the cache has a header but no tensors")
        return cls(int(m.group(1)), m.group(2), scales)


def read_calibration_cache(path: Union[str, os.PathLike[str]]) -> CalibrationCache:
    """Read and parse a calibration cache file.

    Raises:
        ModelFormatError: missing, unreadable or malformed.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelFormatError(f"calibration cache not found: {p}") from None
    except OSError as e:
        raise ModelFormatError(f"cannot read calibration cache {p}: {e.strerror or e}") from None
    return CalibrationCache.parse(data, str(p))


def for_tensorrt(cache: CalibrationCache, trt_version: str, algorithm: str = "EntropyCalibration2"
                 ) -> CalibrationCache:
    """``cache`` with its header set to TensorRT ``trt_version`` (e.g. ``"10.3.0"``) and ``algorithm``.

    A cache already made for that version and algorithm is returned unchanged; otherwise a
    :class:`CalibrationCacheWarning` says what was rewritten.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    code = trt_version_code(trt_version)
    if (cache.version, cache.algorithm) == (code, algorithm):
        return cache
    warnings.warn(
        f"calibration cache header {cache.header} rewritten to TRT-{code}-{algorithm} for TensorRT {trt_version}: "
        "its scales were computed by another TensorRT version or calibrator; check the INT8 engine's accuracy "
        "(or recalibrate)", CalibrationCacheWarning, stacklevel=2)
    return CalibrationCache(code, algorithm, dict(cache.scales))
