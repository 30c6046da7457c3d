"""The OpenVINO backend (CPU): reads the ONNX model directly, no conversion step.

``openvino`` is imported when this module is, i.e. only when the backend is chosen. The model is
compiled once, with its own (dynamic) input shape, and serves every input size. The precision
OpenVINO runs in is its ``INFERENCE_PRECISION_HINT``: bf16 on a CPU with bf16 instructions
(avx512_bf16 / AMX) unless forced with ``precision="f32"``; ``describe()["precision"]`` records the
one the compiled model reports.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import BackendUnavailable, InputError, ModelFormatError
from ..formats.detect import ModelSource, require_onnx, source_name
from .base import BackendBase, Dim, TensorSpec

try:
    import openvino as ov
except ImportError as e:  # pragma: no cover - exercised only without openvino
    raise BackendUnavailable("the openvino backend needs the openvino package: pip install openvino "
                             "(or: pip install 'edgepose[openvino]')") from e

__all__ = ["OpenVinoBackend", "PRECISIONS"]

PRECISIONS = ("auto", "f32", "bf16", "f16")
"""``precision=``: ``auto`` (OpenVINO's choice: bf16 where the CPU has it, else f32) or a forced one."""

_OV_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "u8": "uint8", "i8": "int8", "i32": "int32",
              "i64": "int64", "boolean": "bool"}


def _dims(shape: Any) -> Tuple[Dim, ...]:
    return tuple(int(d.get_length()) if d.is_static else None for d in shape)


def _name(port: Any) -> str:
    return str(port.get_any_name())


class OpenVinoBackend(BackendBase):
    """Run an ONNX model with OpenVINO on the CPU.

    Args:
        model: path to an ``.onnx`` file, or its bytes.
        threads: inference threads (``INFERENCE_NUM_THREADS``; None: OpenVINO's default).
        precision: ``"auto"`` (default: OpenVINO's, bf16 on CPUs with bf16 instructions) or ``"f32"``,
            ``"bf16"``, ``"f16"`` to force one (``INFERENCE_PRECISION_HINT``).
        device: the OpenVINO device (default ``"CPU"``).
    """

    name = "openvino"

    def __init__(self, model: ModelSource, *, threads: Optional[int] = None, precision: Optional[str] = None,
                 device: str = "CPU") -> None:
        super().__init__()
        require_onnx(model, self.name)
        self._source = source_name(model)
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        precision = "auto" if precision is None else str(precision).lower()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self._threads, self._precision, self._device = threads, precision, device
        self._core = ov.Core()
        self._config: Dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            self._config["INFERENCE_NUM_THREADS"] = threads
        if precision != "auto":
            self._config["INFERENCE_PRECISION_HINT"] = precision
        try:
            data = model if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)
            self._model = self._core.read_model(bytes(data) if not isinstance(data, str) else data)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelFormatError(f"openvino cannot load {self._source}: {e}") from e
        self._inputs = [TensorSpec(_name(p), _dims(p.get_partial_shape()),
                                   _OV_DTYPES.get(p.get_element_type().get_type_name(), "float32"))
                        for p in self._model.inputs]
        self._outputs = [TensorSpec(_name(p), _dims(p.get_partial_shape()),
                                    _OV_DTYPES.get(p.get_element_type().get_type_name(), "float32"))
                         for p in self._model.outputs]
        self._metadata = self._read_metadata(data)
        try:
            # One compiled model for every input size: OpenVINO's CPU plugin takes dynamic shapes (measured
            # here on the OMZ model: within a few per cent of a model compiled for one static size), so a
            # folder of photos of many sizes compiles once.
            self._compiled = self._core.compile_model(self._model, device, self._config)
        except Exception as e:
            raise BackendUnavailable(f"openvino cannot compile {self._source} for {device}: {e}") from e
        self._request = self._compiled.create_infer_request()
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: bf16, f32, f16
        self._ran_precision = str(hint.get_type_name() if hasattr(hint, "get_type_name") else hint)

    def _read_metadata(self, data: Any) -> Dict[str, str]:
        """The ONNX ``metadata_props``, as the ONNX frontend files them in the model's rt_info; where
        that fails (a value that is not UTF-8 makes OpenVINO's string conversion raise; rt_info layouts
        differ between versions), read from the ONNX file itself as the ONNX Runtime backend does,
        so an embedded ``edgepose_spec`` is never silently dropped."""
        try:
            meta = self._model.get_rt_info("framework").astype(dict) if self._model.has_rt_info("framework") else {}
            return {str(k): str(v.astype(str) if hasattr(v, "astype") else v) for k, v in meta.items()}
        except Exception:
            pass
        try:
            from ..formats.detect import onnx_metadata

            return onnx_metadata(data, self._source)
        except ImportError as e:
            raise ModelFormatError(f"openvino cannot read the metadata of {self._source} and the onnx package "
                                   "that reads it otherwise is not installed: pip install onnx") from e

    @property
    def version(self) -> str:
        return str(ov.__version__).split("-")[0]

    @property
    def precision(self) -> str:
        """The inference precision of the compiled model: ``bf16``, ``f32`` or ``f16``."""
        return self._ran_precision

    def _run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        arrays = [np.ascontiguousarray(feed[t.name]) for t in self._inputs]
        shapes = tuple(tuple(int(d) for d in a.shape) for a in arrays)
        if any(d < 1 for s in shapes for d in s):
            raise InputError(f"{self.name} backend: empty input shape {list(shapes)}")
        self._request.infer(arrays)
        # Copies: the request's output tensors are rewritten by its next run.
        return {t.name: np.array(self._request.get_output_tensor(i).data) for i, t in enumerate(self._outputs)}

    def _close(self) -> None:
        del self._request, self._compiled, self._model

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(model=self._source, device=self._device, threads=self._threads, precision=self.precision,
                 requested_precision=self._precision)
        return d
