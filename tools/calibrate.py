"""INT8 calibration of an ONNX pose model: a TensorRT calibration cache and a QDQ ONNX model.

    python -m tools.calibrate --model tfpose_mobilenet_thin.onnx --images coco_mini/images \\
        --cache thin.calib.txt --int8-onnx thin.int8.onnx --method entropy

A folder of images goes through edgepose's own pre-processing (:func:`edgepose.preprocess.preprocess`
with the model's :class:`~edgepose.spec.ModelSpec`, as at inference) and through the FP32 model in
ONNX Runtime, whose calibrators collect per-tensor activation statistics (entropy, percentile or
min-max; ``onnxruntime.quantization.create_calibrator``). From one pass this module writes:

1. a TensorRT INT8 calibration cache in the text format ``trtexec --calib``, TensorRT's
   ``IInt8Calibrator.readCalibrationCache`` and DeepStream's ``int8-calib-file`` read::

       TRT-8601-EntropyCalibration2
       input_1:0: 3c010a14
       ...

   one line per tensor (ONNX tensor names are TensorRT's network tensor names), the value being the
   float32 scale ``amax / 127`` as its IEEE-754 bit pattern in hex; TensorRT's dynamic range is
   ``[-scale * 127, scale * 127]`` (symmetric INT8).
2. a QDQ INT8 ONNX model (``quantize_static``, QuantizeLinear / DequantizeLinear pairs, weights
   per channel) that ONNX Runtime runs on the CPU.

The header names ``EntropyCalibration2`` whatever statistics were used: it is the calibrator TensorRT
(and trtexec) instantiates, and TensorRT discards a cache whose header names another algorithm. The
ranges themselves come from the chosen method.

Calibration needs one fixed input size (the statistics stack equal shapes): a fixed-size model uses
its own, a model of any size uses ``--input-size`` (default: the spec's target height by a 4:3
width, rounded up to the size multiple), with the spec's resize mode (letterbox / height).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import re
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from edgepose.errors import EdgePoseError, InputError

__all__ = [
    "METHODS",
    "CalibrationResult",
    "TrtCache",
    "calibrate",
    "calibration_spec",
    "list_images",
    "main",
    "read_trt_cache",
    "tensor_ranges",
    "write_trt_cache",
]

PathLike = Union[str, "os.PathLike[str]"]

METHODS = ("entropy", "percentile", "minmax")
"""Statistics a tensor's range can come from (ONNX Runtime's calibrators)."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

TRT_ALGORITHM = "EntropyCalibration2"
"""The calibrator name in the cache header: what trtexec and DeepStream instantiate."""

DEFAULT_TRT_VERSION = "8.6.1"
"""The TensorRT version written in the header when none is given (``TRT-8601-...``)."""

INT8_MAX = 127.0
_MIN_SCALE = 1e-8  # a tensor that is always 0 still gets a positive (tiny) scale
_CHUNK = 8  # images per collect pass: bounds the activations ONNX Runtime's calibrators hold at once


class CalibrationError(EdgePoseError):
    """Calibration could not run: bad images, a model without activations, a bad cache file."""


# -- inputs ---------------------------------------------------------------------------------------
def list_images(folder: PathLike, limit: Optional[int] = None) -> List[Path]:
    """The images in ``folder`` (by extension, sorted by name), the first ``limit`` of them.

    Raises:
        InputError: the folder does not exist or holds no images.
    """
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"images: folder not found: {path}")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"images: no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
    if limit is not None:
        if limit < 1:
            raise InputError(f"limit: expected a positive number of images, got {limit}")
        files = files[:limit]
    return files


def calibration_spec(model: PathLike, input_size: Optional[Tuple[int, int]] = None):
    """The model's :class:`~edgepose.spec.ModelSpec` with a fixed ``input_size`` for calibration.

    A fixed-size model keeps its size (``input_size`` must agree or be None); a model of any size
    gets ``input_size``, by default the spec's target height by a 4:3 width rounded up to the spec's
    size multiple (COCO's common 640 x 480 frames then fill it).
    """
    from edgepose.spec import spec_for

    spec = spec_for(model)
    if spec.input_size is not None:
        if input_size is not None and tuple(input_size) != spec.input_size:
            raise InputError(f"input_size: the model's input is fixed at {spec.input_size}, got {tuple(input_size)}")
        return spec
    if input_size is None:
        m = spec.size_multiple
        h = spec.target_height
        input_size = (math.ceil(h / m) * m, math.ceil(h * 4 / 3 / m) * m)
    h, w = (int(v) for v in input_size)
    if h < 8 or w < 8:
        raise InputError(f"input_size: expected (height, width) of at least 8 pixels, got {input_size}")
    return spec.replace(input_size=(h, w))


def _load_tensor(path: Path, spec) -> np.ndarray:
    import cv2

    from edgepose.preprocess import preprocess

    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise InputError(f"images: cannot decode {path}")
    tensor, _ = preprocess(frame, spec)
    return tensor


def _reader(paths: Sequence[Path], spec):
    """An ONNX Runtime ``CalibrationDataReader`` over ``paths`` (one image per batch)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Images(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[Path] = iter(paths)

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            path = next(self._it, None)
            return None if path is None else {spec.input_name: _load_tensor(path, spec)}

        def __len__(self) -> int:
            return len(paths)

    return _Images()


# -- statistics -----------------------------------------------------------------------------------
def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
             "minmax": CalibrationMethod.MinMax}
    if name not in table:
        raise InputError(f"method: expected one of {METHODS}, got {name!r}")
    return table[name]


def tensor_ranges(model: PathLike, images: Sequence[PathLike], spec, method: str = "entropy", *,
                  percentile: float = 99.999):
    """Per-tensor activation ranges of ``model`` over ``images`` (ONNX Runtime's calibrators).

    Args:
        model: the FP32 ONNX model.
        images: image files, pre-processed with ``spec`` (a fixed ``input_size``).
        spec: the model's spec (:func:`calibration_spec`).
        method: ``entropy``, ``percentile`` or ``minmax``.
        percentile: the percentile kept by ``percentile`` (of |x|, symmetric).
    Returns:
        ONNX Runtime's ``TensorsData``: every float tensor of the graph (inputs and every node's
        outputs) with its ``range_value`` (lowest, highest).
    """
    from onnxruntime.quantization import create_calibrator

    if spec.input_size is None:
        raise InputError("spec: calibration needs a fixed input_size (see calibration_spec)")
    paths = [Path(p) for p in images]
    if not paths:
        raise InputError("images: no images to calibrate on")
    extra = {"percentile": float(percentile), "symmetric": True} if method == "percentile" else {}
    calibrate_method = _method(method)
    with tempfile.TemporaryDirectory(prefix="edgepose-calib-") as tmp:
        calibrator = create_calibrator(
            Path(model), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=calibrate_method, providers=["CPUExecutionProvider"], extra_options=extra,
        )
        # ONNX Runtime's calibrators keep every activation of a collect pass in memory; feed
        # chunks so a large folder costs a bounded amount (histograms and min/max merge across passes).
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
            for start in range(0, len(paths), _CHUNK):
                calibrator.collect_data(_reader(paths[start:start + _CHUNK], spec))
            try:
                ranges = calibrator.compute_data()
            except ValueError as e:  # e.g. numpy refusing 2048 bins over a tensor that is always 0
                raise CalibrationError(f"{method} statistics failed ({e}); try --method entropy or minmax") from None
        del calibrator
    _keep_outputs_whole(ranges, model)
    return ranges


def _keep_outputs_whole(ranges, model: PathLike) -> None:
    """Give the graph outputs (the heatmap and the PAF) their full observed range.

    Entropy and percentile ranges clip rare large values to resolve the common small ones. Inside the
    network that is the point; on the outputs it cuts the peaks the decoder looks for (most heatmap
    and PAF cells are near 0, the few that matter are not). The histograms span the whole observed
    range, so their edges give it back.
    """
    import onnx

    outputs = {o.name for o in onnx.load(str(model), load_external_data=False).graph.output}
    for name in outputs & set(ranges):
        data = ranges[name]
        edges = getattr(data, "hist_edges", None)
        if edges is None or len(edges) < 2:
            continue  # min-max ranges are already whole
        lo, hi = data.range_value
        data.lowest = np.asarray(min(float(np.min(lo)), float(edges[0])), dtype=np.float32)
        data.highest = np.asarray(max(float(np.max(hi)), float(edges[-1])), dtype=np.float32)


def _amax(lowest: float, highest: float) -> float:
    return max(abs(float(lowest)), abs(float(highest)))


def _scales(ranges) -> Dict[str, float]:
    """Tensor name -> symmetric INT8 scale ``amax / 127`` (positive, finite)."""
    scales: Dict[str, float] = {}
    for name in ranges:
        lo, hi = ranges[name].range_value
        amax = _amax(np.asarray(lo).max(), np.asarray(hi).max())
        if not math.isfinite(amax):
            raise CalibrationError(f"tensor {name!r}: its calibrated range is not finite ({lo}, {hi})")
        # Round-trip through float32 so the stored bits are exactly the value we report.
        scales[name] = float(np.float32(max(amax / INT8_MAX, _MIN_SCALE)))
    return scales


# -- TensorRT cache -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrtCache:
    """A parsed TensorRT calibration cache.

    Attributes:
        version: the header's TensorRT version number (``major * 1000 + minor * 100 + patch``).
        algorithm: the calibrator named in the header (``EntropyCalibration2``).
        scales: tensor name -> float32 scale; the dynamic range is ``scale * 127``.
    """

    version: int
    algorithm: str
    scales: Mapping[str, float]


def _trt_version_number(version: Union[str, int]) -> int:
    if isinstance(version, int) and not isinstance(version, bool):
        return version
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)?", str(version).strip())
    if not m:
        raise InputError(f"trt_version: expected MAJOR.MINOR[.PATCH] such as 8.6.1, got {version!r}")
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if minor > 9 or patch > 99:
        raise InputError(f"trt_version: {version!r} does not fit TensorRT's major*1000+minor*100+patch number")
    return major * 1000 + minor * 100 + patch


def write_trt_cache(scales: Mapping[str, float], path: PathLike, trt_version: Union[str, int] = DEFAULT_TRT_VERSION
                    ) -> Path:
    """Write ``scales`` (tensor name -> float32 scale) as a TensorRT calibration cache text file."""
    number = _trt_version_number(trt_version)
    lines = [f"TRT-{number}-{TRT_ALGORITHM}"]
    for name, scale in scales.items():
        if not (math.isfinite(scale) and scale > 0):
            raise CalibrationError(f"tensor {name!r}: scale must be finite and positive, got {scale}")
        if "\n" in name or not name:
            raise CalibrationError(f"tensor name {name!r} cannot be written in a calibration cache")
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    out = Path(path)
    out.write_text("\n".join(lines) + "\n", encoding="ascii")
    return out


def read_trt_cache(path: PathLike) -> TrtCache:
    """Parse a TensorRT calibration cache (hex scales of any width, as TensorRT accepts).

    Raises:
        CalibrationError: the file is missing, has no ``TRT-<version>-<algorithm>`` header, a
            line is not ``name: hex``, a name repeats, or a scale is not finite and positive.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii")
    except FileNotFoundError:
        raise CalibrationError(f"calibration cache not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"cannot read calibration cache {p}: {e}") from None
    lines = text.splitlines()
    m = re.fullmatch(r"TRT-(\d+)-(\w+)", lines[0].strip()) if lines else None
    if m is None:
        raise CalibrationError(f"{p}: the first line must be 'TRT-<version>-<algorithm>', got {lines[:1]}")
    scales: Dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(": ")  # tensor names may contain ':' (input_1:0)
        if not sep or not re.fullmatch(r"[0-9a-fA-F]{1,8}", value.strip()):
            raise CalibrationError(f"{p}:{number}: expected '<tensor>: <hex float32>', got {line!r}")
        if name in scales:
            raise CalibrationError(f"{p}:{number}: tensor {name!r} appears twice")
        scale = struct.unpack(">f", int(value.strip(), 16).to_bytes(4, "big"))[0]
        if not (math.isfinite(scale) and scale > 0):
            raise CalibrationError(f"{p}:{number}: tensor {name!r} has scale {scale}, not finite and positive")
        scales[name] = scale
    return TrtCache(int(m.group(1)), m.group(2), scales)


# -- the whole step -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` wrote: the cache, the QDQ model (each None when not asked for), the
    number of tensors and of images, and the input size the statistics were taken at."""

    cache: Optional[Path]
    int8_onnx: Optional[Path]
    tensors: int
    images: int
    input_size: Tuple[int, int]


@contextlib.contextmanager
def _quiet_root_logger(level: int = logging.ERROR) -> Iterator[None]:
    root = logging.getLogger()
    old = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(old)


def _quantize(model: Path, out: Path, ranges, method: str) -> None:
    """A QDQ INT8 model from precomputed ranges: activations uint8, weights int8 per channel (the
    pairing ONNX Runtime's CPU kernels run fastest on x86)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    with tempfile.TemporaryDirectory(prefix="edgepose-quant-") as tmp:
        # quantize_static takes precomputed ranges through its JSON range cache: one calibration pass.
        ranges_json = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, ranges_json)
        # ONNX Runtime logs one root-logger warning per unfused BatchNorm constant it cannot quantise
        # per channel (it quantises those per tensor); they are not actionable here.
        with _quiet_root_logger():
            quantize_static(
                str(model), str(out), None, quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=_method(method),
                calibration_cache_path=ranges_json,
            )


def calibrate(model: PathLike, images: Union[PathLike, Sequence[PathLike]], *, cache: Optional[PathLike] = None,
              int8_onnx: Optional[PathLike] = None, method: str = "entropy", limit: Optional[int] = None,
              input_size: Optional[Tuple[int, int]] = None, trt_version: Union[str, int] = DEFAULT_TRT_VERSION,
              percentile: float = 99.999) -> CalibrationResult:
    """Calibrate ``model`` on ``images`` and write a TensorRT cache and / or a QDQ INT8 ONNX model.

    Args:
        model: the FP32 ONNX model.
        images: a folder of images or a list of image files.
        cache: where to write the TensorRT calibration cache (None: not written).
        int8_onnx: where to write the QDQ INT8 model (None: not written).
        method: ``entropy`` (TensorRT's own choice), ``percentile`` or ``minmax``.
        limit: use at most this many images.
        input_size: ``(H, W)`` for a model of any size (see :func:`calibration_spec`).
        trt_version: the TensorRT version named in the cache header.
        percentile: the percentile of |x| kept by ``method="percentile"``.
    Raises:
        InputError: bad arguments or images; ModelFormatError: the model is missing or not ONNX.
    """
    if method not in METHODS:
        raise InputError(f"method: expected one of {METHODS}, got {method!r}")
    if cache is None and int8_onnx is None:
        raise InputError("nothing to write: pass cache= and / or int8_onnx=")
    if not (0 < percentile <= 100):
        raise InputError(f"percentile: expected a value in (0, 100], got {percentile}")
    number = _trt_version_number(trt_version)  # checked before the long part
    if isinstance(images, (str, os.PathLike)):
        paths = list_images(images, limit)
    else:
        paths = [Path(p) for p in images][:limit]
        missing = [p for p in paths if not p.is_file()]
        if not paths or missing:
            raise InputError(f"images: {'no image files given' if not paths else f'not found: {missing[0]}'}")
    model = Path(model)
    spec = calibration_spec(model, input_size)
    ranges = tensor_ranges(model, paths, spec, method, percentile=percentile)
    scales = _scales(ranges)
    if not scales:
        raise CalibrationError(f"{model}: no float tensors were calibrated")
    if cache is not None:
        write_trt_cache(scales, cache, number)
    if int8_onnx is not None:
        _quantize(model, Path(int8_onnx), ranges, method)
    return CalibrationResult(Path(cache) if cache is not None else None,
                             Path(int8_onnx) if int8_onnx is not None else None,
                             len(scales), len(paths), spec.input_size)


# -- command line ---------------------------------------------------------------------------------
def _size(text: str) -> Tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 368x496, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", "-m", required=True, type=Path, help="the FP32 ONNX model")
    p.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder of calibration images")
    p.add_argument("--cache", type=Path, default=None, metavar="TXT", help="write the TensorRT calibration cache here")
    p.add_argument("--int8-onnx", type=Path, default=None, metavar="ONNX", help="write the QDQ INT8 model here")
    p.add_argument("--method", choices=METHODS, default="entropy", help="range statistics (default: entropy)")
    p.add_argument("--percentile", type=float, default=99.999, help="kept percentile for --method percentile")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N images (by name)")
    p.add_argument("--input-size", type=_size, default=None, metavar="HxW",
                   help="calibration input size of a model of any size (default: target height x 4/3 of it)")
    p.add_argument("--trt-version", default=DEFAULT_TRT_VERSION, help="TensorRT version in the cache header")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: a user error prints one line and returns 2."""
    args = _parser().parse_args(argv)
    try:
        if args.cache is None and args.int8_onnx is None:
            raise InputError("nothing to write: pass --cache and / or --int8-onnx")
        for flag, out in (("--cache", args.cache), ("--int8-onnx", args.int8_onnx)):
            if out is not None and out.exists() and not args.overwrite:
                raise InputError(f"{flag} {out}: exists (pass --overwrite to replace it)")
            if out is not None and out.resolve() == args.model.resolve():
                raise InputError(f"{flag} {out}: is the input model")
        result = calibrate(args.model, args.images, cache=args.cache, int8_onnx=args.int8_onnx, method=args.method,
                           limit=args.limit, input_size=args.input_size, trt_version=args.trt_version,
                           percentile=args.percentile)
    except EdgePoseError as e:
        print(f"calibrate: error: {e}", file=sys.stderr)
        return 2
    h, w = result.input_size
    print(f"calibrated {result.tensors} tensors on {result.images} images at {h}x{w} ({args.method})", file=sys.stderr)
    for what, path in (("cache", result.cache), ("int8 onnx", result.int8_onnx)):
        if path is not None:
            print(f"{what}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
