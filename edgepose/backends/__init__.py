"""Inference backends behind one protocol (:class:`~edgepose.backends.base.Backend`).

:func:`create` looks the backend up in a registry; the heavy runtime (onnxruntime, tensorrt) is
imported only when its backend is created, so ``import edgepose`` needs neither.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import BackendUnavailable
from ..formats.detect import ModelFormat, ModelSource, detect_format, source_name
from .base import Backend, BackendBase, TensorSpec

__all__ = ["Backend", "BackendBase", "BackendEntry", "TensorSpec", "available_backends", "create", "REGISTRY"]


@dataclass(frozen=True)
class BackendEntry:
    """How to find one backend.

    Attributes:
        module: the module (relative to ``edgepose.backends``) that defines the class.
        cls: the class name.
        formats: the model formats it runs.
        install: what to ``pip install`` when its runtime is missing.
        can_run: a cheap check that the runtime is importable and a device is present (it must not
            import anything heavy beyond what the check needs).
        why_not: why it cannot run here (None when it can); defaults to "not installed".
    """

    module: str
    cls: str
    formats: Tuple[ModelFormat, ...]
    install: str
    can_run: Callable[[], bool]
    why_not: Optional[Callable[[], Optional[str]]] = None

    def reason(self) -> Optional[str]:
        """Why this backend cannot run here, or None when it can."""
        if self.why_not is not None:
            return self.why_not()
        return None if self.can_run() else f"not installed (pip install {self.install})"

    def load(self) -> type:
        try:
            module = importlib.import_module(f"{__name__}.{self.module}")
        except ImportError as e:
            raise BackendUnavailable(
                f"backend {self.module!r} cannot be imported ({e}): pip install {self.install}"
            ) from e
        return getattr(module, self.cls)


def _importable(name: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package that is missing or broken
            return False

    return check


TENSORRT_INSTALL = ("tensorrt cuda-python  (or: pip install 'edgepose[trt]' tensorrt; on Jetson TensorRT comes "
                    "with JetPack)")


def _tensorrt_why_not() -> Optional[str]:
    """Why the TensorRT backend cannot run here: TensorRT or cuda-python missing, or no CUDA device.
    Imports cuda-python (not TensorRT) only when both are installed."""
    missing = [pkg for pkg, mod in (("tensorrt", "tensorrt"), ("cuda-python", "cuda.bindings"))
               if not _importable(mod)() and not (mod == "cuda.bindings" and _importable("cuda.cudart")())]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install {TENSORRT_INSTALL})"
    from . import _cuda

    if _cuda.device_count() == 0:
        return "no CUDA device or driver found (TensorRT needs an NVIDIA GPU with its driver)"
    return None


REGISTRY: Dict[str, BackendEntry] = {
    "tensorrt": BackendEntry("tensorrt", "TensorRTBackend", (ModelFormat.ENGINE, ModelFormat.ONNX), TENSORRT_INSTALL,
                             lambda: _tensorrt_why_not() is None, _tensorrt_why_not),
    "onnxruntime": BackendEntry("onnxruntime", "OnnxRuntimeBackend", (ModelFormat.ONNX,),
                                "onnxruntime  (or: pip install 'edgepose[onnx]')", _importable("onnxruntime")),
}
"""Backend name -> :class:`BackendEntry`."""

AUTO_ORDER: Tuple[str, ...] = ("tensorrt", "onnxruntime")
"""``backend="auto"`` takes the first of these that is registered, runs the model's format and can run.
TensorRT given an ONNX model builds its engine in memory at load (minutes on a Jetson); build it once
with ``edgepose convert`` and load the ``.engine`` instead."""


def available_backends() -> Dict[str, bool]:
    """Registered backend name -> whether it can run here (runtime installed, device present)."""
    return {name: entry.can_run() for name, entry in REGISTRY.items()}


def create(model: ModelSource, backend: str = "auto", *, key: Optional[str] = None, **options: Any) -> Backend:
    """Open ``model`` (a path or bytes) with ``backend``.

    Args:
        model: the model file or its bytes: ONNX, a TensorRT engine, or a TAO ``.etlt`` (decrypted
            here, in memory, and handed to the backend as ONNX bytes).
        backend: a name in :data:`REGISTRY`, or ``"auto"``: TensorRT for an engine when it can run
            here, else ONNX Runtime. Why a backend was passed over is in ``describe()["selection"]``.
        key: the ``.etlt`` key (default ``$EDGEPOSE_KEY``, ``$TAO_KEY`` or ``nvidia_tlt``); ignored
            for other formats.
        **options: passed to the backend's constructor (ONNX Runtime: ``providers``, ``threads``;
            TensorRT: ``device``, ``cuda_graph``, ``max_batch``).

    Raises:
        BackendUnavailable: unknown backend name, runtime not installed or no device (the message
            says what to install), or no backend can run this kind of model.
        ModelFormatError: the model is missing or not a model file; DecryptionError: wrong key.
    """
    if not isinstance(backend, str):
        raise BackendUnavailable(f"backend: expected a name such as 'auto' or 'onnxruntime', got {backend!r}")
    fmt = detect_format(model)
    selection: Dict[str, Any] = {"requested": backend}
    if fmt is ModelFormat.ETLT:
        from ..formats.etlt import read_etlt

        selection["decrypted"] = source_name(model)
        model = read_etlt(model, key).onnx_bytes()
        fmt = ModelFormat.ONNX
    if backend == "auto":
        skipped: Dict[str, str] = {}
        for name in AUTO_ORDER:
            entry = REGISTRY.get(name)
            if entry is None:
                continue
            if not (fmt in entry.formats or fmt is ModelFormat.UNKNOWN):
                skipped[name] = f"does not run {fmt.value} models"
                continue
            why = entry.reason()
            if why is None:
                backend = name
                break
            skipped[name] = f"cannot run here: {why}"
        else:
            if fmt is ModelFormat.ENGINE and "tensorrt" in skipped:
                raise BackendUnavailable(f"{source_name(model)} is a TensorRT engine, and the TensorRT backend "
                                         f"{skipped['tensorrt']}")
            # Let the ONNX Runtime backend explain what is wrong with an unsupported format, if installed.
            entry = REGISTRY["onnxruntime"]
            if not entry.can_run():
                raise BackendUnavailable(f"no inference backend is installed: pip install {entry.install}")
            backend = "onnxruntime"
        selection["skipped"] = skipped
    entry = REGISTRY.get(backend)
    if entry is None:
        raise BackendUnavailable(f"unknown backend {backend!r}; available: {sorted(REGISTRY)} or 'auto'")
    why = entry.reason()
    if why is not None:
        raise BackendUnavailable(f"backend {backend!r} cannot run here: {why}")
    selection["chosen"] = backend
    instance = entry.load()(model, **options)
    if isinstance(instance, BackendBase):
        instance.selection = selection
    return instance
