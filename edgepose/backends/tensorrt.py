"""The TensorRT backend (TensorRT 10 name-based I/O) and the engine builder behind ``edgepose convert``.

Written against TensorRT 10's documented Python API (``num_io_tensors``, ``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) and cuda-python. The runtime calls
are also in TensorRT 11 (checked against the 11.4 bindings); the builder follows 11's strong typing
where it has no precision flags (:mod:`edgepose.formats.precision`). See ``docs/tensorrt.md`` for what
was and was not run on hardware.

Per backend: one CUDA stream; device buffers and pinned host staging buffers allocated once for the
largest shapes the engine accepts (its optimisation profile's max, capped by ``max_batch``); on a
device with unified memory (Jetson) mapped host memory instead, so the engine reads the inputs and
writes the outputs in place and nothing is copied. Inputs that are already on the device (CuPy,
PyTorch, anything with ``__cuda_array_interface__`` or DLPack) are bound directly. ``run`` returns
the outputs as numpy *views* of the backend's pinned buffers: valid until the next ``run`` (the
decoder reads them at once; copy them to keep them). With ``cuda_graph=True`` the copy + execute +
copy sequence of a repeated input shape is captured once as a CUDA graph and replayed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..errors import BackendUnavailable, InputError, ModelFormatError
from ..formats.detect import ModelFormat, ModelSource, detect_format, source_name
from ..formats.engine import BuildOptions, read_plan, read_sidecar
from . import _cuda
from ._cuda import DeviceBuffer, Graph, HostBuffer, Stream, device_array
from .base import BackendBase, Dim, TensorSpec

try:
    import tensorrt as trt
except ImportError as e:  # pragma: no cover - exercised only where TensorRT is missing
    raise BackendUnavailable(
        "the TensorRT backend needs TensorRT 10 or later and an NVIDIA GPU: pip install tensorrt cuda-python "
        "(Jetson: TensorRT comes with JetPack)"
    ) from e

__all__ = ["TensorRTBackend", "build_engine"]

_log = logging.getLogger(__name__)


class _Logger(trt.ILogger):
    """TensorRT's messages go to Python logging (warnings and errors by default)."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)

    def log(self, severity: Any, msg: str) -> None:
        level = {trt.ILogger.INTERNAL_ERROR: logging.ERROR, trt.ILogger.ERROR: logging.ERROR,
                 trt.ILogger.WARNING: logging.WARNING, trt.ILogger.INFO: logging.INFO}.get(severity, logging.DEBUG)
        _log.log(level, "TensorRT: %s", msg)


def _dims(shape: Any) -> Tuple[Dim, ...]:
    return tuple(int(d) if d >= 0 else None for d in shape)


def _weak_typing() -> bool:
    """True on TensorRT 10 (precision builder flags exist); False on 11+, which builds strongly typed only."""
    return hasattr(trt.BuilderFlag, "FP16")


def _parse_onnx(builder: Any, logger: Any, onnx_bytes: bytes, where: str, strongly_typed: bool) -> Any:
    flags = 0  # TensorRT 10+: explicit batch is the only mode
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFormatError(f"TensorRT cannot parse the ONNX model {where}: {errors or 'unknown error'}")
    return network, parser


def build_engine(onnx_model: ModelSource, options: Optional[BuildOptions] = None, *,
                 where: Optional[str] = None) -> bytes:
    """Build a serialized TensorRT engine (plan) from an ONNX model (path or bytes).

    Precision follows :func:`edgepose.formats.precision.plan_build`: builder flags and an optional
    calibration cache on TensorRT 10, a strongly typed network (converted to FP16 first for ``fp16``)
    on TensorRT 11 and later.

    Args:
        onnx_model: the ONNX file or bytes (a decrypted ``.etlt`` payload, never written to disk).
        options: precision, optimisation profiles, workspace limit, INT8 calibration cache
            (default: ``BuildOptions()``, FP16).
        where: how to name the model in messages.

    Raises:
        ModelFormatError: TensorRT cannot parse the model, a dynamic input has no profile, or the
            precision does not fit the model / this TensorRT version.
        BackendUnavailable: the build failed (TensorRT's log has the reason).
    """
    from ..formats.precision import onnx_quantization, plan_build, to_fp16

    options = options if options is not None else BuildOptions()
    where = where or source_name(onnx_model)
    data = onnx_model if isinstance(onnx_model, bytes) else (
        bytes(onnx_model) if isinstance(onnx_model, (bytearray, memoryview)) else Path(onnx_model).read_bytes())
    plan = plan_build(options.precision, options.calibration_cache, onnx_quantization(data, where),
                      weak_typing=_weak_typing(), trt_version=trt.__version__, where=where)
    if plan.convert_fp16:
        data = to_fp16(data, where)
    logger = _Logger()
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(builder, logger, data, where, plan.strongly_typed)
    config = builder.create_builder_config()
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    groups = options.optimisation_profiles() or [{}]  # one per accuracy-mode scale (formats.engine.scale_profiles)
    profiles = groups[0]
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    unknown = sorted(set(profiles) - {t.name for t in inputs})
    if unknown:
        raise ModelFormatError(f"profile for {unknown}, but the model's inputs are {[t.name for t in inputs]}")
    dynamic = False
    for t in inputs:
        if any(d < 0 for d in t.shape):
            dynamic = True
            if t.name not in profiles:
                raise ModelFormatError(
                    f"input {t.name!r} of {where} has dynamic shape {list(t.shape)}: give it an optimisation profile "
                    f"(-p {t.name},1x...,8x...,16x... or --batch MIN,OPT,MAX)")
    first = None
    for group in groups:
        profile = builder.create_optimization_profile()
        for t in inputs:
            p = group.get(t.name)
            if p is not None:
                profile.set_shape(t.name, p.min, p.opt, p.max)
        if dynamic or profiles:
            config.add_optimization_profile(profile)
        first = first or profile
    calibrator = None
    if plan.calibration_cache:
        calibrator = _cache_calibrator(plan.calibration_cache)
        config.int8_calibrator = calibrator
        if dynamic or profiles:
            config.set_calibration_profile(first)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailable(f"TensorRT could not build an engine from {where} (see the TensorRT log messages "
                                 "of logger 'edgepose.backends.tensorrt')")
    return bytes(serialized)


def _cache_calibrator(path: str) -> Any:
    """An INT8 calibrator that only serves an existing cache (it has no data to calibrate with).

    Defined here, not at import: TensorRT 11 has no calibrator classes, and the backend must still
    import there to run engines.
    """
    from ..formats.calib import for_tensorrt, read_calibration_cache

    cache = for_tensorrt(read_calibration_cache(path), trt.__version__).to_bytes()

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: Any) -> None:
            return None  # no data: TensorRT uses the cache

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: Any) -> None:
            pass

    return CacheCalibrator()


class _Binding:
    """One I/O tensor's memory: a device buffer + pinned staging buffer, or one mapped buffer."""

    def __init__(self, name: str, dtype: np.dtype, max_shape: Tuple[int, ...], mapped: bool) -> None:
        self.name, self.dtype, self.max_shape = name, dtype, max_shape
        nbytes = max(int(np.prod(max_shape, dtype=np.int64)) * dtype.itemsize, 1)
        self.host = HostBuffer(nbytes, mapped=mapped)
        self.device: Optional[DeviceBuffer] = None
        try:
            if not mapped:
                self.device = DeviceBuffer(nbytes)
        except BaseException:
            self.host.close()
            raise

    @property
    def device_ptr(self) -> int:
        return self.device.ptr if self.device is not None else self.host.device_ptr

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
        self.host.close()


class TensorRTBackend(BackendBase):
    """Run a TensorRT engine (or an ONNX model, built into an engine in memory at load).

    Args:
        model: an engine file or its bytes (``<engine>.edgepose.json`` beside it supplies the model
            spec), or an ONNX file / bytes (built with ``build_options``; slow, build once with
            ``edgepose convert`` instead).
        device: the CUDA device index.
        cuda_graph: capture and replay copy + execute + copy as a CUDA graph per input shape.
        max_batch: allocate for at most this batch (default: the profile's max).
        zero_copy: use mapped host memory instead of device buffers; default: on devices with
            unified memory (Jetson), where it saves every copy.
        build_options: how to build an engine from ONNX (default: FP16, batch 1..1..1 for a dynamic
            batch axis).

    Raises:
        BackendUnavailable: no CUDA device; ModelFormatError: not an engine / ONNX, or TensorRT
        cannot deserialize the engine (built by another TensorRT version or for another GPU).
    """

    name = "tensorrt"

    def __init__(self, model: ModelSource, *, device: int = 0, cuda_graph: bool = False,
                 max_batch: Optional[int] = None, zero_copy: Optional[bool] = None,
                 build_options: Optional[BuildOptions] = None) -> None:
        super().__init__()
        self._source = source_name(model)
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be a positive int or None, got {max_batch!r}")
        self._bindings: Dict[str, _Binding] = {}
        self._graphs: Dict[Any, Graph] = {}
        self._seen: set = set()
        self._stream: Optional[Stream] = None
        self._context = self._engine = self._runtime = None
        try:
            self._open(model, device, cuda_graph, max_batch, zero_copy, build_options)
        except BaseException:
            self._close()
            raise

    def _open(self, model: ModelSource, device: int, cuda_graph: bool, max_batch: Optional[int],
              zero_copy: Optional[bool], build_options: Optional[BuildOptions]) -> None:
        if _cuda.device_count() <= device:
            raise BackendUnavailable(f"TensorRT backend: CUDA device {device} not found "
                                     f"({_cuda.device_count()} device(s) visible)")
        _cuda.set_device(device)
        self._props = _cuda.device_properties(device)
        fmt = detect_format(model)
        self._build: Dict[str, Any] = {}
        spec_meta: Optional[Dict[str, Any]] = None
        if fmt is ModelFormat.ONNX:
            options = build_options or BuildOptions(precision="fp16")
            plan = build_engine(model, options, where=self._source)
            self._build = {"built_at_load": True, **options.to_dict()}
        elif fmt is ModelFormat.ENGINE:
            plan = read_plan(model)
            info = read_sidecar(model, plan)
            if info is not None:
                spec_meta, self._build = info.spec, info.build
        else:
            raise ModelFormatError(f"{self._source}: the TensorRT backend runs TensorRT engines and ONNX models, "
                                   f"not {fmt.value} files")
        self._metadata = {"edgepose_spec": json.dumps(spec_meta)} if spec_meta else {}
        self._logger = _Logger()
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            built = self._build.get("tensorrt")
            raise ModelFormatError(
                f"TensorRT {trt.__version__} cannot load the engine {self._source}"
                + (f" (built with TensorRT {built})" if built else "")
                + ": engines are tied to the TensorRT version and GPU that built them; rebuild it here with "
                "`edgepose convert MODEL.onnx -o MODEL.engine`")
        self._context = self._engine.create_execution_context()
        self._stream = Stream()
        self._cuda_graph = bool(cuda_graph)
        self._zero_copy = bool(self._props.integrated and self._props.can_map_host_memory) \
            if zero_copy is None else bool(zero_copy)
        self._inputs: List[TensorSpec] = []
        self._outputs: List[TensorSpec] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            spec = TensorSpec(name, _dims(self._engine.get_tensor_shape(name)), dtype.name)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs).append(spec)
        # Largest shapes: each input at its profile's max (batch capped), then the outputs they imply.
        # With several optimisation profiles (accuracy mode: one per scale, edgepose convert --scales) the
        # buffers hold the largest shapes over all of them; _run_mixed picks the profile a shape fits.
        self._profiles = max(1, int(getattr(self._engine, "num_optimization_profiles", 1)))
        self._profile = 0
        largest: Dict[str, Tuple[int, ...]] = {}
        for index in reversed(range(self._profiles)):  # profile 0 last: the one left selected
            if self._profiles > 1:
                self._context.set_optimization_profile_async(index, self._stream.ptr)
            for t in self._inputs:
                shape = tuple(self._engine.get_tensor_shape(t.name))
                if any(d < 0 for d in shape):
                    shape = tuple(self._engine.get_tensor_profile_shape(t.name, index)[2])
                if max_batch is not None and t.rank and shape[0] > max_batch:
                    shape = (max_batch, *shape[1:])
                self._context.set_input_shape(t.name, shape)
            for t in self._inputs + self._outputs:
                shape = tuple(int(d) for d in self._context.get_tensor_shape(t.name))
                largest[t.name] = tuple(max(a, b) for a, b in zip(largest.get(t.name, shape), shape))
        for t in self._inputs + self._outputs:
            self._bindings[t.name] = _Binding(t.name, np.dtype(t.dtype), largest[t.name], self._zero_copy)

    # -- protocol --------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return str(trt.__version__)


    @property
    def max_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """The largest shape of each I/O tensor the buffers hold."""
        return {name: b.max_shape for name, b in self._bindings.items()}

    def run(self, feed: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Run the engine. Values may be numpy arrays or device arrays (bound without a copy).

        Returns:
            Output name -> numpy view of the backend's output buffer (valid until the next ``run``).

        Raises:
            ValueError / InputError: a missing, unknown or mis-shaped input, a device input of the
                wrong dtype or not C-contiguous, a shape beyond what the engine was allocated for.
        """
        if self._closed:
            raise RuntimeError(f"{self.name} backend: run() after close()")
        on_device: Dict[str, _cuda.DeviceArray] = {}
        check: Dict[str, Any] = {}
        for name, value in feed.items():
            da = device_array(value)
            if da is None:
                check[name] = value
                continue
            binding = self._bindings.get(name)
            if binding is not None and (da.dtype != binding.dtype or not da.contiguous):
                raise InputError(f"{self.name} backend: device input {name!r} must be C-contiguous "
                                 f"{binding.dtype.name}, got {da.dtype.name}{'' if da.contiguous else ' (strided)'}; "
                                 "convert it on the device")
            on_device[name] = da
            # Zero-stride stand-in of the same shape and dtype: the shape checks cost no memory.
            check[name] = np.broadcast_to(np.zeros((), da.dtype), da.shape)
        checked = self._check_feed(check)
        return self._run_mixed({k: v for k, v in checked.items() if k not in on_device}, on_device)

    def _run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return self._run_mixed(feed, {})

    def _select_profile(self, shapes: Dict[str, Tuple[int, ...]]) -> None:
        """Switch to the first optimisation profile whose min..max holds every input shape (an engine
        built with one profile per accuracy-mode scale); CUDA graphs captured under another are dropped."""
        def fits(index: int) -> bool:
            for name, shape in shapes.items():
                lo, _, hi = self._engine.get_tensor_profile_shape(name, index)
                if not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
                    return False
            return True

        if fits(self._profile):
            return
        index = next((i for i in range(self._profiles) if fits(i)), None)
        if index is None:
            raise InputError(f"{self.name} backend: input shapes {shapes} fit none of the engine's "
                             f"{self._profiles} optimisation profiles (rebuild with edgepose convert --scales ...)")
        self._context.set_optimization_profile_async(index, self._stream.ptr)
        self._profile = index
        for graph in self._graphs.values():  # captured with the other profile's shapes
            graph.close()
        self._graphs = {}

    def _run_mixed(self, host: Dict[str, np.ndarray], on_device: Dict[str, _cuda.DeviceArray]) -> Dict[str, np.ndarray]:
        stream = self._stream
        assert stream is not None
        shapes = {name: tuple(da.shape) for name, da in on_device.items()}
        shapes.update({name: tuple(arr.shape) for name, arr in host.items()})
        for name, shape in shapes.items():
            limit = self._bindings[name].max_shape
            if any(a > m for a, m in zip(shape, limit)):
                raise InputError(f"{self.name} backend: input {name!r} of shape {shape} exceeds the largest shape "
                                 f"the engine was built / allocated for, {limit} (rebuild with a larger profile or "
                                 "pass a larger max_batch)")
        if self._profiles > 1:
            self._select_profile(shapes)
        for name, shape in shapes.items():
            if not self._context.set_input_shape(name, shape):
                raise InputError(f"{self.name} backend: TensorRT refused shape {shape} for input {name!r}")
        # Host inputs go to the pinned (or mapped) buffer; the copies are enqueued below.
        for name, arr in host.items():
            np.copyto(self._bindings[name].host.view(arr.shape, arr.dtype), arr)
        for name in shapes:
            ptr = on_device[name].ptr if name in on_device else self._bindings[name].device_ptr
            self._context.set_tensor_address(name, ptr)
        out_shapes = {t.name: tuple(int(d) for d in self._context.get_tensor_shape(t.name)) for t in self._outputs}
        for name in out_shapes:
            self._context.set_tensor_address(name, self._bindings[name].device_ptr)

        def enqueue() -> None:
            for name, arr in host.items():
                b = self._bindings[name]
                if b.device is not None:
                    b.device.copy_from_host(b.host.view(arr.shape, arr.dtype), stream)
            if not self._context.execute_async_v3(stream.ptr):
                raise _cuda.CudaError(f"TensorRT execute_async_v3 failed for {self._source} (see the TensorRT log)")
            for name, shape in out_shapes.items():
                b = self._bindings[name]
                if b.device is not None:
                    b.device.copy_to_host(b.host.view(shape, b.dtype), stream)

        if self._cuda_graph:
            # Same shapes and the same device pointers -> the same captured graph. The first run of
            # a shape goes eagerly (TensorRT finishes shape-dependent setup there); the next captures.
            key = tuple(sorted((n, s, on_device[n].ptr if n in on_device else 0) for n, s in shapes.items()))
            graph = self._graphs.get(key)
            if graph is None and key in self._seen:
                graph = self._graphs[key] = Graph(stream, enqueue)
            if graph is None:
                self._seen.add(key)
                enqueue()
            else:
                graph.launch()
        else:
            enqueue()
        stream.synchronize()
        return {name: self._bindings[name].host.view(shape, self._bindings[name].dtype)
                for name, shape in out_shapes.items()}

    def _close(self) -> None:
        for g in list(getattr(self, "_graphs", {}).values()):
            g.close()
        self._graphs = {}
        for b in list(getattr(self, "_bindings", {}).values()):
            b.close()
        self._bindings = {}
        if getattr(self, "_stream", None) is not None:
            self._stream.close()
        # TensorRT objects free their memory when the last reference goes, context first.
        self._context = self._engine = self._runtime = None

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(model=self._source, device={"name": self._props.name, "integrated": self._props.integrated,
                                             "compute_capability": list(self._props.compute_capability)},
                 zero_copy=self._zero_copy, cuda_graph=self._cuda_graph,
                 max_shapes={k: list(v) for k, v in self.max_shapes.items()}, build=dict(self._build))
        return d
