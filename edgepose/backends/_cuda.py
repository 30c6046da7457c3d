"""The CUDA resources of the TensorRT backend, through cuda-python (``cuda.bindings``).

Everything CUDA returns goes through :func:`cuda_call`, the one place that turns an error code into
an exception (:class:`CudaError`, an :class:`~edgepose.errors.EdgePoseError`). Every allocation is
an object with ``close()`` (idempotent, also a context manager) that owns exactly one resource:

- :class:`DeviceBuffer`: ``cudaMalloc`` memory;
- :class:`HostBuffer`: page-locked host memory (``cudaHostAlloc``), optionally *mapped* into the
  device's address space: on a device with unified memory (Jetson: ``integrated``), the device reads
  and writes it in place and no copy is needed at all;
- :class:`Stream`: one CUDA stream; :class:`Graph`: a captured and instantiated CUDA graph.

:func:`device_array` reads a device pointer, shape and dtype from anything that offers
``__cuda_array_interface__`` (CuPy, PyTorch, Numba) or DLPack (``__dlpack__``), so such arrays are
bound to TensorRT directly, with no host round trip.

Nothing here allocates at import time; importing this module needs cuda-python, not a GPU.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import BackendUnavailable, EdgePoseError

try:  # cuda-python 12.6+ / 13: cuda.bindings; older 12.x: the cuda.cudart / cuda.cuda modules
    from cuda.bindings import driver, nvrtc, runtime
except ImportError:  # pragma: no cover - depends on the installed cuda-python
    try:
        from cuda import cuda as driver  # type: ignore[no-redef]
        from cuda import cudart as runtime  # type: ignore[no-redef]
        from cuda import nvrtc  # type: ignore[no-redef]
    except ImportError as e:
        raise BackendUnavailable("CUDA support needs cuda-python: pip install cuda-python "
                                 "(or: pip install 'edgepose[trt]')") from e

__all__ = [
    "CudaError",
    "DeviceArray",
    "DeviceBuffer",
    "Graph",
    "HostBuffer",
    "Stream",
    "cuda_call",
    "device_array",
    "device_count",
    "device_properties",
    "driver",
    "nvrtc",
    "runtime",
]


class CudaError(EdgePoseError, RuntimeError):
    """A CUDA runtime, driver or NVRTC call failed; the message names the call and CUDA's reason."""


def _error_text(err: Any) -> str:
    try:
        if isinstance(err, runtime.cudaError_t):
            _, s = runtime.cudaGetErrorString(err)
            return s.decode() if isinstance(s, bytes) else str(s)
        if isinstance(err, driver.CUresult):
            _, s = driver.cuGetErrorString(err)
            return s.decode() if isinstance(s, bytes) else str(s)
        if isinstance(err, nvrtc.nvrtcResult):
            _, s = nvrtc.nvrtcGetErrorString(err)
            return s.decode() if isinstance(s, bytes) else str(s)
    except Exception:  # a failing error-string lookup must not hide the original error
        pass
    return str(err)


def _ok(err: Any) -> bool:
    return int(err) == 0  # cudaSuccess, CUDA_SUCCESS and NVRTC_SUCCESS are all 0


def cuda_call(result: Any, what: str = "CUDA call") -> Any:
    """Check a cuda-python return value ``(err, *values)`` and return the values.

    Returns None for no value, the value itself for one, a tuple for several.

    Raises:
        CudaError: ``err`` is not success; the message has ``what``, CUDA's name and its text.
    """
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if not _ok(err):
        name = getattr(err, "name", str(err))
        raise CudaError(f"{what} failed: {name} ({_error_text(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_count() -> int:
    """The number of CUDA devices, 0 when there is no driver or no device (never raises)."""
    try:
        err, n = runtime.cudaGetDeviceCount()
    except Exception:
        return 0
    return int(n) if _ok(err) else 0


@dataclass(frozen=True)
class DeviceProperties:
    """What the backend needs to know about a device."""

    index: int
    name: str
    integrated: bool  # unified memory (Jetson): mapped host memory is the fast path
    can_map_host_memory: bool
    compute_capability: Tuple[int, int]
    total_memory: int


def device_properties(index: int = 0) -> DeviceProperties:
    """The :class:`DeviceProperties` of device ``index``."""
    p = cuda_call(runtime.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    name = p.name.decode(errors="replace").rstrip("\0") if isinstance(p.name, bytes) else str(p.name)
    return DeviceProperties(index, name, bool(p.integrated), bool(p.canMapHostMemory), (int(p.major), int(p.minor)),
                            int(p.totalGlobalMem))


def set_device(index: int) -> None:
    """Make device ``index`` current for this thread (creates its primary context)."""
    cuda_call(runtime.cudaSetDevice(index), f"cudaSetDevice({index})")


class _Resource:
    """One CUDA resource; ``close()`` releases it once (also on ``with`` exit and, as a last resort,
    on garbage collection)."""

    _handle: Any = None

    def _release(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        if self._handle is not None:
            try:
                self._release()
            finally:
                self._handle = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # a safety net; owners call close() explicitly
        try:
            self.close()
        except Exception:
            pass


class Stream(_Resource):
    """A CUDA stream that synchronises with the legacy default stream (not ``cudaStreamNonBlocking``):
    work that CuPy or PyTorch queued on their default stream finishes before this stream reads its
    results, so device arrays handed in need no explicit synchronisation."""

    def __init__(self) -> None:
        self._handle = cuda_call(runtime.cudaStreamCreateWithFlags(runtime.cudaStreamDefault),
                                 "cudaStreamCreateWithFlags")

    @property
    def handle(self) -> Any:
        if self._handle is None:
            raise CudaError("stream used after close()")
        return self._handle

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        cuda_call(runtime.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def _release(self) -> None:
        cuda_call(runtime.cudaStreamDestroy(self._handle), "cudaStreamDestroy")


class DeviceBuffer(_Resource):
    """``nbytes`` of device memory."""

    def __init__(self, nbytes: int) -> None:
        if nbytes < 1:
            raise ValueError(f"DeviceBuffer: nbytes must be >= 1, got {nbytes}")
        self.nbytes = int(nbytes)
        self._handle = cuda_call(runtime.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})")

    @property
    def ptr(self) -> int:
        if self._handle is None:
            raise CudaError("device buffer used after close()")
        return int(self._handle)

    def copy_from_host(self, array: np.ndarray, stream: Stream) -> None:
        """Asynchronous host -> device copy of a C-contiguous ``array`` (pinned for a truly async copy)."""
        if array.nbytes > self.nbytes:
            raise ValueError(f"copy of {array.nbytes} bytes into a device buffer of {self.nbytes}")
        cuda_call(runtime.cudaMemcpyAsync(self.ptr, array.ctypes.data, array.nbytes,
                                          runtime.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle),
                  "cudaMemcpyAsync(host to device)")

    def copy_from_device(self, ptr: int, nbytes: int, stream: Stream) -> None:
        """Asynchronous device -> device copy of ``nbytes`` from ``ptr``."""
        if nbytes > self.nbytes:
            raise ValueError(f"copy of {nbytes} bytes into a device buffer of {self.nbytes}")
        cuda_call(runtime.cudaMemcpyAsync(self.ptr, ptr, nbytes, runtime.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                                          stream.handle), "cudaMemcpyAsync(device to device)")

    def copy_to_host(self, array: np.ndarray, stream: Stream) -> None:
        """Asynchronous device -> host copy into the C-contiguous ``array``."""
        if array.nbytes > self.nbytes:
            raise ValueError(f"copy of {array.nbytes} bytes out of a device buffer of {self.nbytes}")
        cuda_call(runtime.cudaMemcpyAsync(array.ctypes.data, self.ptr, array.nbytes,
                                          runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle),
                  "cudaMemcpyAsync(device to host)")

    def _release(self) -> None:
        cuda_call(runtime.cudaFree(self._handle), "cudaFree")


class HostBuffer(_Resource):
    """``nbytes`` of page-locked host memory; ``mapped=True`` also maps it into the device's address
    space (:attr:`device_ptr`), for zero-copy use on unified-memory devices."""

    def __init__(self, nbytes: int, *, mapped: bool = False) -> None:
        if nbytes < 1:
            raise ValueError(f"HostBuffer: nbytes must be >= 1, got {nbytes}")
        self.nbytes = int(nbytes)
        self.mapped = bool(mapped)
        flags = runtime.cudaHostAllocMapped if mapped else runtime.cudaHostAllocDefault
        self._handle = cuda_call(runtime.cudaHostAlloc(self.nbytes, flags), f"cudaHostAlloc({self.nbytes})")
        self._device_ptr: Optional[int] = None
        if mapped:
            try:
                self._device_ptr = int(cuda_call(runtime.cudaHostGetDevicePointer(self._handle, 0),
                                                 "cudaHostGetDevicePointer"))
            except BaseException:
                self.close()
                raise

    @property
    def ptr(self) -> int:
        if self._handle is None:
            raise CudaError("host buffer used after close()")
        return int(self._handle)

    @property
    def device_ptr(self) -> int:
        """The device address of a mapped buffer (the host address is not usable on the device)."""
        if self._device_ptr is None:
            raise CudaError("device_ptr of a host buffer that is not mapped")
        self.ptr  # noqa: B018 - raises after close()
        return self._device_ptr

    def view(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """A numpy array over the first bytes of the buffer (no copy). Valid until ``close()``; the
        array keeps no reference to the buffer, so its owner must outlive it."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if n > self.nbytes:
            raise ValueError(f"view of {n} bytes over a host buffer of {self.nbytes}")
        raw = (ctypes.c_byte * max(n, 1)).from_address(self.ptr)
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)

    def _release(self) -> None:
        cuda_call(runtime.cudaFreeHost(self._handle), "cudaFreeHost")


class Graph(_Resource):
    """A CUDA graph captured from the work a callable enqueues on ``stream``, then instantiated.

    The captured work replays with the same pointers and sizes; the owner recaptures when either
    changes (the TensorRT backend keys graphs by input shape).
    """

    def __init__(self, stream: Stream, enqueue: Any) -> None:
        self._stream = stream
        cuda_call(runtime.cudaStreamBeginCapture(stream.handle,
                                                 runtime.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
                  "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            # End the capture whatever happened, or the stream stays unusable.
            err, graph = runtime.cudaStreamEndCapture(stream.handle)
            if _ok(err) and graph is not None:
                runtime.cudaGraphDestroy(graph)
            raise
        graph = cuda_call(runtime.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture")
        try:
            self._handle = cuda_call(runtime.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            cuda_call(runtime.cudaGraphDestroy(graph), "cudaGraphDestroy")

    def launch(self) -> None:
        if self._handle is None:
            raise CudaError("graph used after close()")
        cuda_call(runtime.cudaGraphLaunch(self._handle, self._stream.handle), "cudaGraphLaunch")

    def _release(self) -> None:
        cuda_call(runtime.cudaGraphExecDestroy(self._handle), "cudaGraphExecDestroy")


# -- device arrays from other libraries -------------------------------------------------------------

@dataclass(frozen=True)
class DeviceArray:
    """A device array handed in by another library: pointer, shape, dtype, whether C-contiguous,
    and the object that keeps the memory alive."""

    ptr: int
    shape: Tuple[int, ...]
    dtype: np.dtype
    contiguous: bool
    device: int
    owner: Any

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _c_contiguous(shape: Tuple[int, ...], strides: Optional[Tuple[int, ...]], itemsize: int) -> bool:
    if strides is None:
        return True
    expect = itemsize
    for dim, stride in zip(reversed(shape), reversed(strides)):
        if dim != 1 and stride != expect:
            return False
        expect *= dim
    return True


# DLPack C structures (dlpack.h, v0.x ABI as __dlpack__() returns by default).
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_DL_CUDA, _DL_CUDA_MANAGED = 2, 13
_DL_CODES = {0: "i", 1: "u", 2: "f", 6: "b"}  # kDLInt, kDLUInt, kDLFloat, kDLBool


def _from_dlpack(obj: Any) -> DeviceArray:
    dev_type, dev_id = obj.__dlpack_device__()
    if int(dev_type) not in (_DL_CUDA, _DL_CUDA_MANAGED):
        raise ValueError(f"the DLPack array is on device type {int(dev_type)}, not CUDA")
    capsule = obj.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    # A DLManagedTensor starts with its DLTensor; the capsule (kept in ``owner``) frees it when dropped.
    t = _DLTensor.from_address(get(capsule, b"dltensor"))
    shape = tuple(t.shape[i] for i in range(t.ndim))
    kind = _DL_CODES.get(t.dtype.code)
    if kind is None or t.dtype.lanes != 1:
        raise ValueError(f"unsupported DLPack dtype code {t.dtype.code} lanes {t.dtype.lanes}")
    dtype = np.dtype(f"{kind}{t.dtype.bits // 8}") if kind != "b" else np.dtype(bool)
    strides = None if not t.strides else tuple(t.strides[i] * dtype.itemsize for i in range(t.ndim))
    return DeviceArray(int(t.data or 0) + int(t.byte_offset), shape, dtype,
                       _c_contiguous(shape, strides, dtype.itemsize), int(dev_id), (obj, capsule))


def device_array(obj: Any) -> Optional[DeviceArray]:
    """The :class:`DeviceArray` behind ``obj`` when it lives on a CUDA device, else None (e.g. numpy).

    ``__cuda_array_interface__`` is preferred (no capsule to consume); DLPack is used for objects
    that only speak it. A CPU DLPack array (numpy has ``__dlpack__`` too) is not a device array.
    """
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        shape = tuple(int(d) for d in cai["shape"])
        dtype = np.dtype(cai["typestr"])
        strides = cai.get("strides")
        ptr = int(cai["data"][0])
        return DeviceArray(ptr, shape, dtype, _c_contiguous(shape, tuple(strides) if strides else None,
                                                            dtype.itemsize), -1, obj)
    if hasattr(obj, "__dlpack_device__") and not isinstance(obj, np.ndarray):
        dev_type, _ = obj.__dlpack_device__()
        if int(dev_type) in (_DL_CUDA, _DL_CUDA_MANAGED):
            return _from_dlpack(obj)
    return None
