"""The ONNX Runtime backend.

``onnxruntime`` is imported when this module is, i.e. only when the backend is chosen. Execution
providers are explicit: CPU unless the caller asks for ``cuda`` or ``tensorrt``, and a provider the
installed onnxruntime cannot use is an error, never a silent fall-back to the CPU.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BackendUnavailable, ModelFormatError
from ..formats.detect import ModelSource, require_onnx, source_name
from .base import BackendBase, Dim, TensorSpec

try:
    import onnxruntime as ort
except ImportError as e:  # pragma: no cover - exercised only without onnxruntime
    raise BackendUnavailable(
        "the onnxruntime backend needs the onnxruntime package: pip install onnxruntime "
        "(or onnxruntime-gpu for CUDA / TensorRT providers)"
    ) from e

__all__ = ["OnnxRuntimeBackend", "PROVIDER_ALIASES"]

PROVIDER_ALIASES: Dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
"""Short provider names accepted by ``providers=`` (full ORT names are accepted too)."""

ProviderArg = Union[None, str, Sequence[Union[str, Tuple[str, Dict[str, Any]]]]]

# ONNX tensor element types as ORT names them -> numpy dtype names.
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _dim(d: Any) -> Dim:
    return int(d) if isinstance(d, (int, np.integer)) and d > 0 else (str(d) if isinstance(d, str) else None)


def _resolve_providers(providers: ProviderArg) -> List[Union[str, Tuple[str, Dict[str, Any]]]]:
    """Map user provider names to ORT's, checking that the installed onnxruntime has each."""
    if providers is None:
        providers = ["cpu"]
    elif isinstance(providers, str):
        providers = [providers]
    available = ort.get_available_providers()
    out: List[Union[str, Tuple[str, Dict[str, Any]]]] = []
    for p in providers:
        name, opts = (p[0], dict(p[1])) if isinstance(p, tuple) else (p, None)
        if not isinstance(name, str):
            raise ValueError(f"providers: expected provider names, got {p!r}")
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            known = ", ".join(sorted(PROVIDER_ALIASES))
            hint = (" Install onnxruntime-gpu (pip install onnxruntime-gpu) with a matching CUDA"
                    + (" and TensorRT" if full == "TensorrtExecutionProvider" else "") + "."
                    if full in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else
                    f" Use one of {known} or a full ORT provider name.")
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__} has no execution provider {name!r} ({full}); "
                f"it offers {available}.{hint}"
            )
        out.append((full, opts) if opts is not None else full)
    return out


class OnnxRuntimeBackend(BackendBase):
    """Run an ONNX model with ONNX Runtime.

    Args:
        model: path to an ``.onnx`` file, or its bytes (e.g. a decrypted TAO payload).
        providers: ``"cpu"`` (default), ``"cuda"``, ``"tensorrt"``, a full ORT provider name, or a
            list of them (optionally ``(name, options)`` tuples) in priority order. A provider the
            installed onnxruntime lacks, or that fails to initialise, raises :class:`BackendUnavailable`.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        optimization: ORT graph optimisation level: ``"all"`` (default), ``"extended"``, ``"basic"``
            or ``"disable"``.

    The batch axis and any symbolic axis are dynamic; fixed axes are checked before each run.
    One instance may be shared between threads for ``run`` (ORT sessions are thread-safe).
    """

    name = "onnxruntime"

    def __init__(self, model: ModelSource, *, providers: ProviderArg = None, threads: Optional[int] = None,
                 optimization: str = "all") -> None:
        super().__init__()
        require_onnx(model, self.name)
        self._source = source_name(model)
        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        if optimization not in levels:
            raise ValueError(f"optimization must be one of {sorted(levels)}, got {optimization!r}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        requested = _resolve_providers(providers)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = levels[optimization]
        opts.log_severity_level = 3  # errors only: ORT's warnings would go to stderr
        if threads is not None:
            opts.intra_op_num_threads = threads
        self._threads = threads
        data = model if isinstance(model, (bytes, bytearray)) else (
            bytes(model) if isinstance(model, memoryview) else os.fspath(model))
        try:
            self._session = ort.InferenceSession(data, sess_options=opts, providers=requested)
        except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise ModelFormatError(f"onnxruntime cannot load {self._source}: {e}") from e
        # ORT drops a provider it cannot initialise (missing CUDA libraries) with only a warning; an
        # explicit request that did not take effect is an error here.
        active = self._session.get_providers()
        lost = [p if isinstance(p, str) else p[0] for p in requested]
        lost = [p for p in lost if p not in active]
        if lost:
            raise BackendUnavailable(
                f"onnxruntime could not initialise {lost} for {self._source} (active: {active}); check the "
                "CUDA / TensorRT installation or ask for providers='cpu'"
            )
        self._inputs = [self._spec(t) for t in self._session.get_inputs()]
        self._outputs = [self._spec(t) for t in self._session.get_outputs()]
        try:
            self._metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        except UnicodeDecodeError:  # a metadata string that is not UTF-8: read it with replacement characters
            from ..formats.detect import onnx_metadata

            self._metadata = onnx_metadata(data, self._source)

    @staticmethod
    def _spec(t: Any) -> TensorSpec:
        return TensorSpec(t.name, tuple(_dim(d) for d in t.shape), _ORT_DTYPES.get(t.type, t.type))

    @property
    def version(self) -> str:
        return str(ort.__version__)


    @property
    def providers(self) -> List[str]:
        """The execution providers of the session, in priority order."""
        return list(self._session.get_providers())

    def _run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        names = [t.name for t in self._outputs]
        values = self._session.run(names, feed)
        return dict(zip(names, values))

    def _close(self) -> None:
        # ORT frees a session when the last reference goes; dropping ours is all that close() can do.
        del self._session

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(model=self._source, providers=self.providers if not self.closed else [], threads=self._threads)
        return d
