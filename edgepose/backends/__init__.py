"""Inference backends behind one protocol (:class:`~edgepose.backends.base.Backend`).

:func:`create` looks the backend up in a registry; the heavy runtime (onnxruntime, tensorrt) is
imported only when its backend is created, so ``import edgepose`` needs neither.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import BackendUnavailable, InputError
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
        auto_why_not: why ``backend="auto"`` passes it over although it can run (None: it does not).
    """

    module: str
    cls: str
    formats: Tuple[ModelFormat, ...]
    install: str
    can_run: Callable[[], bool]
    why_not: Optional[Callable[[], Optional[str]]] = None
    auto_why_not: Optional[Callable[[], Optional[str]]] = None

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


def cpu_has_bf16() -> bool:
    """Whether this CPU reports bf16 instructions (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo;
    False where that file is absent, e.g. not Linux). Cheap: reads one file, imports nothing."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _openvino_auto_why_not() -> Optional[str]:
    """Why ``backend="auto"`` passes over an installed OpenVINO: it is measured faster than ONNX Runtime
    only through bf16 (benchmarks/results/backends.md); in f32 the two are level."""
    if not cpu_has_bf16():
        return ("installed, but auto picks it only on a CPU with bf16 instructions (avx512_bf16 / amx_bf16), "
                "where it runs in bf16 and was measured faster than onnxruntime; ask for backend='openvino'")
    return None


OPENVINO_INSTALL = "openvino  (or: pip install 'edgepose[openvino]')"

REGISTRY: Dict[str, BackendEntry] = {
    "tensorrt": BackendEntry("tensorrt", "TensorRTBackend", (ModelFormat.ENGINE, ModelFormat.ONNX), TENSORRT_INSTALL,
                             lambda: _tensorrt_why_not() is None, _tensorrt_why_not),
    "openvino": BackendEntry("openvino", "OpenVinoBackend", (ModelFormat.ONNX,), OPENVINO_INSTALL,
                             _importable("openvino"), auto_why_not=_openvino_auto_why_not),
    "onnxruntime": BackendEntry("onnxruntime", "OnnxRuntimeBackend", (ModelFormat.ONNX,),
                                "onnxruntime  (or: pip install 'edgepose[onnx]')", _importable("onnxruntime")),
}
"""Backend name -> :class:`BackendEntry`."""

AUTO_ORDER: Tuple[str, ...] = ("tensorrt", "openvino", "onnxruntime")
"""``backend="auto"`` takes the first of these that is registered, runs the model's format and can run
(and that its entry's ``auto_why_not`` does not pass over: OpenVINO only on a CPU with bf16).
TensorRT given an ONNX model builds its engine in memory at load (minutes on a Jetson); build it once
with ``edgepose convert`` and load the ``.engine`` instead."""


def _unknown_options(cls: type, options: Dict[str, Any]) -> List[str]:
    """The keys of ``options`` that the backend class's constructor does not take."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return []
    return sorted(k for k in options if k not in params)


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
            OpenVINO: ``threads``, ``precision`` (``"f32"`` forces f32); TensorRT: ``device``,
            ``cuda_graph``, ``max_batch``). An option the chosen backend does not take is an InputError.

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
                why = entry.auto_why_not() if entry.auto_why_not is not None else None
                unknown = _unknown_options(entry.load(), options) if why is None and options else []
                if unknown:  # e.g. ONNX Runtime's providers=: a request meant for another backend
                    why = f"takes no option {', '.join(map(repr, unknown))}"
                if why is not None:
                    skipped[name] = why
                    continue
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
    cls = entry.load()
    unknown = _unknown_options(cls, options)
    if unknown:
        takes = sorted(k for k, p in inspect.signature(cls.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY)
        raise InputError(f"backend {backend!r} takes no option {', '.join(map(repr, unknown))} (it takes {takes})")
    instance = cls(model, **options)
    if isinstance(instance, BackendBase):
        instance.selection = selection
    return instance
