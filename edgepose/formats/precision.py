"""How an engine gets its precision, for TensorRT 10 and for TensorRT 11 and later.

TensorRT 10 (JetPack 6, DeepStream 7) builds *weakly typed* networks. Builder flags such as
``BuilderFlag.FP16`` and ``BuilderFlag.INT8`` let it choose lower-precision kernels. INT8 takes
its ranges from a calibration cache (implicit quantization) or from the model's Q/DQ nodes
(explicit quantization).

TensorRT 11 removed weak typing. It has no FP16 or INT8 builder flag, no calibrator and no calibration
cache. A network runs in the types its ONNX declares: FP16 needs an FP16 model, and INT8 needs a
Q/DQ model.

This module holds the rules and imports neither TensorRT nor CUDA, so they are tested on any machine.
The TensorRT backend only carries out the :class:`BuildPlan` that :func:`plan_build` returns.

=================  ==========================================  ========================================
``-t``             TensorRT 10 (weak typing)                   TensorRT 11+ (strong typing)
=================  ==========================================  ========================================
fp32               no flag                                     as the model declares
fp16               ``FP16`` flag                               the model converted to FP16 first
                                                               (:func:`to_fp16`, inputs/outputs FP32)
int8 + cache       ``FP16`` + ``INT8`` flags, cache            refused: no calibration caches in 11
int8 + Q/DQ model  ``FP16`` + ``INT8`` flags                   strongly typed; float layers stay FP32
=================  ==========================================  ========================================

A Q/DQ model builds only with ``-t int8``. Its Q/DQ nodes must be what TensorRT runs: symmetric
(zero point 0) signed INT8. ONNX Runtime's CPU format, with unsigned activations and non-zero zero
points, is refused with a message saying how to make the TensorRT one. ``tools/calibrate.py``
writes both kinds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

import numpy as np

from ..errors import BackendUnavailable, ModelFormatError
from .detect import parse_onnx

__all__ = ["BuildPlan", "Quantization", "check_build", "is_fp16", "onnx_quantization", "plan_build", "to_fp16"]

_Q_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Quantization:
    """What the Q/DQ nodes of an ONNX model say.

    Attributes:
        nodes: the number of QuantizeLinear / DequantizeLinear nodes (0: a float model).
        tensorrt: True when every zero point TensorRT would see is 0 and of a signed type (or absent).
        problem: why the Q/DQ nodes are not TensorRT's (empty when ``tensorrt`` or a float model).
    """

    nodes: int = 0
    tensorrt: bool = True
    problem: str = ""

    @property
    def quantized(self) -> bool:
        return self.nodes > 0


def _constants(model: Any) -> dict:
    """Initializers and Constant-node values by name, as TensorProtos (converted only where read)."""
    values = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return values


def onnx_quantization(model: Union[bytes, Any], where: str = "model") -> Quantization:
    """Count the Q/DQ nodes of an ONNX model (bytes or ``onnx.ModelProto``) and check them for TensorRT.

    Raises:
        ModelFormatError: the bytes are not a parsable ONNX model (``where`` names it).
    """
    model = parse_onnx(model, where)
    nodes = [n for n in model.graph.node if n.op_type in _Q_OPS]
    if not nodes:
        return Quantization()
    from onnx import numpy_helper

    consts = _constants(model)
    for n in nodes:
        zero_point = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if zero_point is None or zero_point not in consts:
            continue  # absent: 0 (TensorRT reads it as signed INT8); computed: not checkable here
        zp = numpy_helper.to_array(consts[zero_point])
        if zp.dtype == np.uint8:
            return Quantization(len(nodes), False, f"{n.op_type} {n.name!r} quantizes to uint8 (ONNX Runtime's CPU "
                                                   "format); TensorRT runs signed INT8 Q/DQ only")
        if np.any(zp != 0):
            return Quantization(len(nodes), False, f"{n.op_type} {n.name!r} has a non-zero zero point (asymmetric); "
                                                   "TensorRT supports symmetric quantization only")
    return Quantization(len(nodes))


@dataclass(frozen=True)
class BuildPlan:
    """What the builder does for one build (carried out by ``edgepose.backends.tensorrt``).

    Attributes:
        flags: builder flags to set, by ``trt.BuilderFlag`` name.
        strongly_typed: create the network with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.
        calibration_cache: serve this INT8 calibration cache to the builder (TensorRT 10 only).
        convert_fp16: convert the ONNX model to FP16 (:func:`to_fp16`) before parsing it.
    """

    flags: Tuple[str, ...] = ()
    strongly_typed: bool = False
    calibration_cache: Optional[str] = None
    convert_fp16: bool = False


_QDQ_HOWTO = ("make one with `python -m tools.calibrate -m MODEL.onnx --images DIR --tensorrt-onnx OUT.onnx` "
              "(symmetric signed INT8 Q/DQ)")


def check_build(precision: str, calibration_cache: Optional[str], quant: Quantization, where: str = "model") -> None:
    """The rules that depend only on the model and the options (checked before TensorRT is needed).

    Raises:
        ModelFormatError: a Q/DQ model TensorRT cannot run, or a precision that does not fit the model.
    """
    if quant.quantized and not quant.tensorrt:
        raise ModelFormatError(f"{where} is quantized for ONNX Runtime, not for TensorRT: {quant.problem}. Build "
                               f"from the FP32 model instead; for INT8, {_QDQ_HOWTO}")
    if quant.quantized and precision != "int8":
        raise ModelFormatError(f"{where} is already quantized ({quant.nodes} Q/DQ nodes): build it with -t int8")
    if quant.quantized and calibration_cache:
        raise ModelFormatError(f"{where} is already quantized ({quant.nodes} Q/DQ nodes): its Q/DQ nodes hold the "
                               "INT8 scales, so a calibration cache is not used; drop --calib")
    if precision == "int8" and not quant.quantized and not calibration_cache:
        raise ModelFormatError(f"-t int8 needs a calibration cache (--calib FILE; TensorRT 10 only) or a Q/DQ INT8 "
                               f"model; {where} has no Q/DQ nodes. edgepose does not calibrate while building: "
                               + _QDQ_HOWTO)


def plan_build(precision: str, calibration_cache: Optional[str], quant: Quantization, *, weak_typing: bool,
               trt_version: str = "", where: str = "model") -> BuildPlan:
    """The :class:`BuildPlan` for ``precision`` on a TensorRT with (10) or without (11+) weak typing.

    Raises:
        ModelFormatError: see :func:`check_build`; also a calibration cache on TensorRT 11+.
    """
    check_build(precision, calibration_cache, quant, where)
    if weak_typing:
        if precision == "fp32":
            return BuildPlan()
        if precision == "fp16":
            return BuildPlan(("FP16",))
        return BuildPlan(("FP16", "INT8"), calibration_cache=calibration_cache or None)
    if precision == "int8" and not quant.quantized:
        raise ModelFormatError(f"TensorRT {trt_version or '11+'} removed INT8 calibration caches (implicit "
                               f"quantization); it builds INT8 only from a Q/DQ model: {_QDQ_HOWTO}")
    return BuildPlan(strongly_typed=True, convert_fp16=precision == "fp16")


def to_fp16(onnx_model: Union[bytes, Any], where: str = "model") -> bytes:
    """The model (ONNX bytes or ModelProto) with FP16 weights and activations, inputs and outputs
    kept FP32 (what TensorRT 11's strongly typed builder needs for an FP16 engine; ONNX Runtime runs
    it too). A model that is already FP16 (:func:`is_fp16`) comes back unchanged.

    Uses ``onnxconverter-common`` (``pip install onnxconverter-common``; in ``edgepose[trt]``), which
    keeps operators without FP16 kernels in FP32. Weights below FP16's smallest normal value are
    clamped to it; its warnings about that are silenced (they are expected on real networks).

    Raises:
        BackendUnavailable: onnxconverter-common is not installed.
        ModelFormatError: the bytes are not a parsable ONNX model.
    """
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise BackendUnavailable("converting a model to FP16 needs onnxconverter-common: pip install "
                                 "onnxconverter-common (or 'edgepose[trt]')") from None
    model = parse_onnx(onnx_model, where)
    if is_fp16(model):
        # Converting twice would add a second layer of casts.
        return bytes(onnx_model) if isinstance(onnx_model, (bytes, bytearray, memoryview)) \
            else model.SerializeToString()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the float32 number 1e-12 will be truncated to 1e-07"
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    return converted.SerializeToString()


def is_fp16(model: Any) -> bool:
    """True when an ``onnx.ModelProto``'s weights are FP16 and none of its large weights FP32."""
    import onnx

    kinds = {t.data_type for t in model.graph.initializer if np.prod(t.dims) > 16}
    return onnx.TensorProto.FLOAT16 in kinds and onnx.TensorProto.FLOAT not in kinds
