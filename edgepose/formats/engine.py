"""TensorRT engine files, the model spec stored with them, and engine-build options.

An engine file stays a plain serialized TensorRT plan, loadable by ``trtexec --loadEngine`` and any
TensorRT program; TensorRT 10 has no place for user metadata inside a plan. The edgepose facts about
the engine live in a *sidecar* beside it, ``<engine file name>.edgepose.json`` (for
``pose.engine``: ``pose.engine.edgepose.json``)::

    {
      "edgepose_engine": 1,                      # sidecar format version
      "spec": {... ModelSpec fields ...},        # pre-processing, tensors, strides, topology
      "build": {"tensorrt": "10.3.0", "precision": "fp16", "profiles": [...], "workspace_mib": 1024,
                "source": "bodyposenet.etlt", "source_sha256": "...", "source_file_sha256": "...",
                "calibration_cache": "cal.txt"},
      "engine_sha256": "..."                     # the plan it describes
    }

The TensorRT backend reads it and publishes the spec as the backend metadata key ``edgepose_spec``,
which :meth:`ModelSpec.detect` already honours; so ``EdgePose("pose.engine")`` knows its
pre-processing, strides and topology with no extra arguments. A sidecar whose ``engine_sha256`` does
not match the plan is refused (it describes another engine). ``source_sha256`` is the digest of the
ONNX the engine was built from (an .etlt's decrypted payload), ``source_file_sha256`` that of the
source file itself: when that file sits beside the engine and no longer matches, loading is refused
(the engine is stale or the model damaged; delete the key to accept it).

Engines written by Ultralytics carry a JSON header (uint32 length, JSON, plan); :func:`read_plan`
strips it. This module imports neither TensorRT nor CUDA.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .. import _json
from ..errors import ModelFormatError, SpecError
from .detect import _TRT_MAGIC, ModelSource, source_name

__all__ = [
    "SIDECAR_SUFFIX",
    "PRECISIONS",
    "BuildOptions",
    "EngineInfo",
    "Profile",
    "parse_profile",
    "parse_shape",
    "profile_from_batch",
    "scale_profiles",
    "read_plan",
    "read_sidecar",
    "sidecar_path",
    "write_engine",
]

SIDECAR_SUFFIX = ".edgepose.json"
SIDECAR_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
PathLike = Union[str, "os.PathLike[str]"]

Shape = Tuple[int, ...]


def parse_shape(text: str, what: str = "shape") -> Shape:
    """``"1x288x384x3"`` -> ``(1, 288, 384, 3)``; every dimension a positive int.

    Raises:
        ValueError: naming ``what`` and the text.
    """
    parts = text.strip().lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise ValueError(f"{what}: expected dimensions such as 1x288x384x3 (positive integers joined by 'x'), "
                         f"got {text!r}")
    return dims


@dataclass(frozen=True)
class Profile:
    """A TensorRT optimisation profile for one input: the min / opt / max shapes it accepts."""

    input_name: str
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not self.input_name:
            raise ValueError("profile: the input name is empty")
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError(f"profile for {self.input_name!r}: min {self.min}, opt {self.opt} and max {self.max} "
                             "must have the same number of dimensions")
        for i, (a, b, c) in enumerate(zip(self.min, self.opt, self.max)):
            if not (1 <= a <= b <= c):
                raise ValueError(f"profile for {self.input_name!r}: axis {i} needs 1 <= min <= opt <= max, got "
                                 f"{a}, {b}, {c}")

    @property
    def max_batch(self) -> int:
        return self.max[0]

    def to_dict(self) -> Dict[str, Any]:
        return {"input": self.input_name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        return cls(str(d["input"]), tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))

    def trtexec_args(self) -> List[str]:
        """The same profile as ``trtexec`` flags (for the docs and for cross-checks)."""
        def fmt(s: Shape) -> str:
            return f"{self.input_name}:{'x'.join(map(str, s))}"

        return [f"--minShapes={fmt(self.min)}", f"--optShapes={fmt(self.opt)}", f"--maxShapes={fmt(self.max)}"]


def parse_profile(text: str) -> Profile:
    """A profile in tao-converter's ``-p`` syntax: ``NAME,MINxHxWxC,OPTxHxWxC,MAXxHxWxC``.

    The name may itself contain commas or colons (``input_1:0``); the three shapes are the last three
    comma-separated fields.

    Raises:
        ValueError: a malformed profile (the message shows the expected form).
    """
    parts = text.rsplit(",", 3)
    if len(parts) != 4 or not parts[0].strip():
        raise ValueError(f"profile: expected NAME,MIN,OPT,MAX such as input_1:0,1x288x384x3,8x288x384x3,"
                         f"16x288x384x3, got {text!r}")
    name = parts[0].strip()
    shapes = [parse_shape(p, f"profile {name!r} {which} shape") for p, which in zip(parts[1:], ("min", "opt", "max"))]
    return Profile(name, *shapes)


def profile_from_batch(input_name: str, shape: Sequence[Any], batch: Tuple[int, int, int],
                       input_size: Optional[Tuple[int, int]] = None, layout: str = "NHWC") -> Profile:
    """A profile that varies only the batch: ``batch`` = (min, opt, max) on the model input ``shape``.

    Args:
        input_name: the input tensor.
        shape: the ONNX input shape; dynamic axes (None or a name) other than the batch are taken
            from ``input_size``.
        batch: (min, opt, max) batch sizes.
        input_size: (H, W) for a model whose spatial size is dynamic.
        layout: ``NHWC`` or ``NCHW`` (where H and W are).

    Raises:
        ValueError: a spatial axis that is dynamic while ``input_size`` is None, or a bad batch triple.
    """
    if len(shape) != 4:
        raise ValueError(f"input {input_name!r} has shape {list(shape)}; a 4-D image input is expected")
    dims: List[int] = []
    h_ax, w_ax = (1, 2) if layout == "NHWC" else (2, 3)
    for axis, d in enumerate(shape):
        if axis == 0:
            dims.append(0)
            continue
        fixed = d if isinstance(d, int) and d > 0 else None
        if fixed is None and input_size is not None and axis in (h_ax, w_ax):
            fixed = input_size[0] if axis == h_ax else input_size[1]
        if fixed is None:
            raise ValueError(f"input {input_name!r} {list(shape)}: axis {axis} is dynamic; pass the input size "
                             "(--input-size HxW) or a full profile (-p NAME,MIN,OPT,MAX)")
        dims.append(fixed)
    lo, opt, hi = batch
    return Profile(input_name, (lo, *dims[1:]), (opt, *dims[1:]), (hi, *dims[1:]))


def scale_profiles(input_name: str, shape: Sequence[Any], batch: Tuple[int, int, int],
                   input_size: Tuple[int, int], layout: str, scales: Sequence[float], flip: bool = False
                   ) -> List[Profile]:
    """One profile per scale of accuracy mode (``EdgePose(scales=..., flip=...)``): each scale's input
    size (``input_size`` scaled as :func:`edgepose.tta.scaled_spec` scales it), and with ``flip`` twice
    the batch (a frame and its mirror run as one batch).

    Raises:
        ValueError: as :func:`profile_from_batch`.
    """
    from ..spec import ModelSpec
    from ..tta import scaled_spec

    base = ModelSpec(input_size=tuple(input_size))  # type: ignore[arg-type]
    k = 2 if flip else 1
    lo, opt, hi = batch
    out = []
    for s in scales:
        size = scaled_spec(base, float(s)).input_size
        out.append(profile_from_batch(input_name, shape, (lo, opt * k, hi * k), size, layout))
    return out


@dataclass(frozen=True)
class BuildOptions:
    """How to build an engine (the choices of ``trtexec`` / ``tao-converter`` that matter here).

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``. How each is built on TensorRT 10 and 11 is in
            :mod:`edgepose.formats.precision` (on 10, INT8 also enables FP16 for layers without
            scales, as ``trtexec --fp16 --int8`` does).
        profiles: the optimisation profiles of the dynamic inputs (empty: a static model). An input
            named in several profiles gets one TensorRT optimisation profile each, in order (accuracy
            mode: one per scale, see :func:`scale_profiles`); the backend picks the one a shape fits.
        workspace_mib: the builder's workspace memory-pool limit (None: TensorRT's default).
        calibration_cache: path of an INT8 calibration cache (TensorRT 10; ``int8`` needs it unless
            the model has Q/DQ nodes); a cache written by another TensorRT version gets its header
            rewritten, with a warning.
    """

    precision: str = "fp16"
    profiles: Tuple[Profile, ...] = ()
    workspace_mib: Optional[int] = None
    calibration_cache: Optional[str] = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.workspace_mib is not None and (isinstance(self.workspace_mib, bool)
                                               or not isinstance(self.workspace_mib, int) or self.workspace_mib < 1):
            raise ValueError(f"workspace_mib must be a positive int (MiB), got {self.workspace_mib!r}")
        if self.precision != "int8" and self.calibration_cache:
            raise ValueError(f"a calibration cache is only used for int8, not {self.precision}")
        if len(set(self.profiles)) != len(self.profiles):
            raise ValueError(f"two profiles for the same input are identical: {[p.to_dict() for p in self.profiles]}")
        counts = {n: sum(p.input_name == n for p in self.profiles) for n in {p.input_name for p in self.profiles}}
        if len(set(counts.values())) > 1:
            raise ValueError(f"every dynamic input needs the same number of profiles (one per optimisation profile), "
                             f"got {counts}")

    def optimisation_profiles(self) -> List[Dict[str, Profile]]:
        """The profiles grouped into TensorRT optimisation profiles: the i-th profile of each input."""
        groups: List[Dict[str, Profile]] = []
        for p in self.profiles:
            i = next((k for k, g in enumerate(groups) if p.input_name not in g), len(groups))
            if i == len(groups):
                groups.append({})
            groups[i][p.input_name] = p
        return groups

    def to_dict(self) -> Dict[str, Any]:
        return {"precision": self.precision, "profiles": [p.to_dict() for p in self.profiles],
                "workspace_mib": self.workspace_mib,
                "calibration_cache": os.fspath(self.calibration_cache) if self.calibration_cache else None}


@dataclass(frozen=True)
class EngineInfo:
    """What the sidecar says about an engine: its spec (a dict of ModelSpec fields) and its build."""

    spec: Dict[str, Any]
    build: Dict[str, Any]
    engine_sha256: str

    def to_json(self) -> str:
        return json.dumps({"edgepose_engine": SIDECAR_VERSION, "spec": self.spec, "build": self.build,
                           "engine_sha256": self.engine_sha256}, indent=2) + "\n"


def sidecar_path(engine_path: PathLike) -> Path:
    """``pose.engine`` -> ``pose.engine.edgepose.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def read_plan(model: ModelSource) -> bytes:
    """The serialized TensorRT plan in ``model`` (a path or bytes), without an Ultralytics JSON header.

    Raises:
        ModelFormatError: missing, empty, or not a TensorRT engine.
    """
    where = source_name(model)
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
    else:
        path = Path(model)
        if not path.is_file():
            raise ModelFormatError(f"engine file not found: {path}" if not path.exists()
                                   else f"engine path is not a file: {path}")
        data = path.read_bytes()
    if data[:4] in _TRT_MAGIC:
        return data
    if len(data) >= 8 and data[4:5] == b"{":
        n = int.from_bytes(data[:4], "little")
        if 8 + n <= len(data) and data[4 + n:8 + n] in _TRT_MAGIC:
            return data[4 + n:]
    raise ModelFormatError(f"{where} is not a serialized TensorRT engine (it starts with {data[:8].hex(' ')}; "
                           "a plan starts with 'ftrt')" if data else f"engine {where} is empty")


def read_sidecar(engine: ModelSource, plan: Optional[bytes] = None) -> Optional[EngineInfo]:
    """The :class:`EngineInfo` beside an engine file, or None (no sidecar, or the engine is bytes).

    Raises:
        SpecError: the sidecar is not valid JSON, has an unknown version, or describes another engine
            (its ``engine_sha256`` differs from ``plan``'s).
    """
    if isinstance(engine, (bytes, bytearray, memoryview)):
        return None
    side = sidecar_path(engine)
    if not side.is_file():
        return None
    try:
        text = side.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"engine sidecar {side}: cannot read it as JSON ({e})") from None
    d = _json.loads(text, f"engine sidecar {side}: cannot read it as JSON:", SpecError)
    if not isinstance(d, dict) or d.get("edgepose_engine") != SIDECAR_VERSION or not isinstance(d.get("spec"), dict):
        raise SpecError(f"engine sidecar {side}: not an edgepose engine sidecar version {SIDECAR_VERSION} "
                        "(expected keys edgepose_engine, spec, build, engine_sha256)")
    _check_sidecar_fields(d, side)
    digest = d.get("engine_sha256") or ""
    if plan is not None and digest and digest != hashlib.sha256(plan).hexdigest():
        raise SpecError(f"engine sidecar {side} describes another engine (sha256 mismatch): the engine was rebuilt "
                        "or replaced; rebuild with `edgepose convert` or delete the sidecar and pass --spec")
    _check_source(Path(engine), side, d.get("build") or {})
    return EngineInfo(dict(d["spec"]), dict(d.get("build") or {}), digest)


def _check_source(engine: Path, side: Path, build: Mapping[str, Any]) -> None:
    """When the model the engine was built from sits beside it, it must be the same file (its sha256
    is ``build.source_file_sha256``): a changed model means a stale engine, or a damaged model."""
    name, recorded = build.get("source"), build.get("source_file_sha256")
    if not isinstance(name, str) or not name or not recorded:
        return
    source = side.parent / Path(name).name
    if not source.is_file():
        return
    from .detect import file_sha256

    if file_sha256(source) != recorded:
        raise ModelFormatError(
            f"{source}: changed since {engine} was built from it (its sha256 differs from source_file_sha256 in "
            f"{side}): rebuild the engine with `edgepose convert`, or, if this engine is still the one you want, "
            f"delete source_file_sha256 from {side}")


def _check_sidecar_fields(d: Dict[str, Any], side: Path) -> None:
    """The kinds of a sidecar's fields, and its spec as ModelSpec reads it (SpecError naming the field)."""
    from ..spec import _check_keys

    build = d.get("build")
    if build is not None and not isinstance(build, dict):
        raise SpecError(f"engine sidecar {side}: 'build' must be a JSON object, got {type(build).__name__}")
    for key in ("engine_sha256", *(f"build.{k}" for k in ("source_sha256", "source_file_sha256"))):
        where, name = (build or {}, key[6:]) if key.startswith("build.") else (d, key)
        value = where.get(name)
        if value is not None and not (isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}|", value)):
            raise SpecError(f"engine sidecar {side}: {key!r} must be a sha256 hex digest, got {str(value)[:70]}")
    _check_keys(d["spec"], f"engine sidecar {side}: 'spec'")


def write_engine(path: PathLike, plan: bytes, spec: Optional[Mapping[str, Any]], build: Mapping[str, Any]) -> Path:
    """Write the plan to ``path`` and, when ``spec`` is given, its sidecar. Returns the sidecar path
    (or ``path`` when there is none)."""
    path = Path(path)
    if plan[:4] not in _TRT_MAGIC:
        raise ModelFormatError("write_engine: the bytes are not a serialized TensorRT plan")
    path.write_bytes(plan)
    if spec is None:
        return path
    info = EngineInfo(dict(spec), dict(build), hashlib.sha256(plan).hexdigest())
    side = sidecar_path(path)
    side.write_text(info.to_json())
    return side


def trt_version_code(version: Union[str, int]) -> int:
    """TensorRT's version number ``NV_TENSORRT_VERSION``, as calibration-cache headers spell it.

    NvInferVersion.h defines it as ``major * 1000 + minor * 100 + patch`` up to TensorRT 9 (8.6.1 ->
    8601, so TAO's caches start ``TRT-8601-``) and, from TensorRT 10 on, as
    ``NV_TENSORRT_VERSION_INT = major * 10000 + minor * 100 + patch`` (10.3.0 -> 100300, 10.10.0 ->
    101000, 11.0.0 -> 110000). ``version`` is ``MAJOR.MINOR[.PATCH[.BUILD]]``; an int is taken as a
    code already. The one place edgepose and tools/calibrate compute it.

    Raises:
        ValueError: not a version, or a minor / patch that the number cannot hold.
    """
    if isinstance(version, int) and not isinstance(version, bool):
        if version < 1:
            raise ValueError(f"TensorRT version: a version code is a positive int, got {version}")
        return version
    m = re.fullmatch(r"(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?(?:\.\d+)?", str(version).strip())
    if not m:
        raise ValueError(f"TensorRT version: expected MAJOR.MINOR[.PATCH] such as 10.3.0, got {version!r}")
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    old = major < 10
    if minor > (9 if old else 99) or patch > 99:
        raise ValueError(f"TensorRT version {version!r}: minor/patch too large for TensorRT's "
                         f"{'major*1000' if old else 'major*10000'} + minor*100 + patch version number")
    return major * (1000 if old else 10000) + minor * 100 + patch
