"""Inference backends behind one protocol (:class:`~edgepose.backends.base.Backend`).

:func:`create` looks the backend up in a registry; the heavy runtime (onnxruntime, tensorrt) is
imported only when its backend is created, so ``import edgepose`` needs neither.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

from ..errors import BackendUnavailable
from ..formats.detect import ModelFormat, ModelSource, detect_format
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
    """

    module: str
    cls: str
    formats: Tuple[ModelFormat, ...]
    install: str
    can_run: Callable[[], bool]

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
        return importlib.util.find_spec(name) is not None

    return check


REGISTRY: Dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry("onnxruntime", "OnnxRuntimeBackend", (ModelFormat.ONNX,),
                                "onnxruntime  (or: pip install 'edgepose[onnx]')", _importable("onnxruntime")),
}
"""Backend name -> :class:`BackendEntry`. A TensorRT entry joins when that backend exists."""

AUTO_ORDER: Tuple[str, ...] = ("tensorrt", "onnxruntime")
"""``backend="auto"`` takes the first of these that is registered, runs the model's format and can run."""


def available_backends() -> Dict[str, bool]:
    """Registered backend name -> whether its runtime is installed here."""
    return {name: entry.can_run() for name, entry in REGISTRY.items()}


def create(model: ModelSource, backend: str = "auto", **options: Any) -> Backend:
    """Open ``model`` (a path or bytes) with ``backend``.

    Args:
        model: the model file or its bytes.
        backend: a name in :data:`REGISTRY`, or ``"auto"``: TensorRT when it could run the model
            (not available yet), else ONNX Runtime.
        **options: passed to the backend's constructor (ONNX Runtime: ``providers``, ``threads``).

    Raises:
        BackendUnavailable: unknown backend name, runtime not installed (the message says what to
            ``pip install``), or no backend can run this kind of model.
        ModelFormatError: the model is missing or not a model file.
    """
    if not isinstance(backend, str):
        raise BackendUnavailable(f"backend: expected a name such as 'auto' or 'onnxruntime', got {backend!r}")
    if backend == "auto":
        fmt = detect_format(model)
        for name in AUTO_ORDER:
            entry = REGISTRY.get(name)
            if entry is not None and (fmt in entry.formats or fmt is ModelFormat.UNKNOWN) and entry.can_run():
                backend = name
                break
        else:
            # Let the ONNX Runtime backend explain what is wrong with an unsupported format, if installed.
            entry = REGISTRY["onnxruntime"]
            if not entry.can_run():
                raise BackendUnavailable(f"no inference backend is installed: pip install {entry.install}")
            backend = "onnxruntime"
    entry = REGISTRY.get(backend)
    if entry is None:
        raise BackendUnavailable(
            f"unknown backend {backend!r}; available: {sorted(REGISTRY)} or 'auto'"
            + (" (the TensorRT backend is not part of this edgepose version yet)" if backend == "tensorrt" else "")
        )
    if not entry.can_run():
        raise BackendUnavailable(f"backend {backend!r} is not installed: pip install {entry.install}")
    return entry.load()(model, **options)
