"""Pre-processing on the GPU: a frame already in device memory -> the model's input tensor, on the device.

One small CUDA kernel, compiled at run time with NVRTC (through cuda-python), does what
:func:`edgepose.preprocess.preprocess` does on the CPU for ``interpolation="linear"``: resize with
OpenCV's ``INTER_LINEAR`` geometry (pixel centres, ``align_corners=False``, the source coordinate
``(x + 0.5) * (w / rw) - 0.5`` clamped to the image), place the result by the same
:class:`~edgepose.preprocess.Transform` (letterbox / stretch / height), swap BGR -> RGB when the
spec asks, normalise ``y = x * scale + offset``, write padding ``pad_value * scale + offset`` and
lay the tensor out as NHWC or NCHW, float32 or float16. A decoded camera frame on the GPU therefore
never visits the host before inference.

It is not bit-equal to the CPU path: OpenCV resizes uint8 images with 11-bit fixed-point weights
and rounds the resized pixel to uint8 before normalising, the kernel interpolates in float32. The
difference is at most about one grey level before normalisation (``tests/test_tensorrt.py``
compares both on a GPU). :func:`reference` is the kernel's arithmetic in numpy, so the formula is
tested on machines without a GPU too.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError, SpecError
from .preprocess import Transform, transform_for
from .spec import ModelSpec

__all__ = ["GpuPreprocessor", "KERNEL_SOURCE", "KERNELS", "Launch", "batch_geometry", "compile_kernels",
           "kernel_launches", "reference"]

KERNEL_SOURCE = r"""
// One thread per output pixel of one batch item; all three channels written by that thread.
// src: H x W x 3 uint8 BGR with a row pitch in bytes. dst: the batch tensor (NHWC or NCHW).
// The same source also compiles as host C++ (the tests run it on the CPU): there, the includer
// supplies __device__, __global__, blockIdx / blockDim / threadIdx, min and half_bits.
#ifdef __CUDACC_RTC__
__device__ unsigned short half_bits(float v) {
    unsigned short h;  // float -> IEEE half, round to nearest even (no cuda_fp16.h needed)
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
#endif
template <typename T> __device__ void store(T* p, float v);
template <> __device__ void store<float>(float* p, float v) { *p = v; }
template <> __device__ void store<unsigned short>(unsigned short* p, float v) { *p = half_bits(v); }

template <typename T>
__device__ void letterbox(const unsigned char* src, int src_h, int src_w, int src_pitch,
                          T* dst, int dst_h, int dst_w, int nchw,
                          int pad_x, int pad_y, int content_w, int content_h,
                          float inv_sx, float inv_sy, int rgb, float scale, float offset, float pad) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    float v[3] = {pad, pad, pad};
    int cx = x - pad_x, cy = y - pad_y;
    if (cx >= 0 && cy >= 0 && cx < content_w && cy < content_h) {
        // OpenCV INTER_LINEAR geometry: sample at the source position of this pixel's centre.
        float fx = fminf(fmaxf((cx + 0.5f) * inv_sx - 0.5f, 0.0f), (float)(src_w - 1));
        float fy = fminf(fmaxf((cy + 0.5f) * inv_sy - 0.5f, 0.0f), (float)(src_h - 1));
        int x0 = (int)fx, y0 = (int)fy;
        int x1 = min(x0 + 1, src_w - 1), y1 = min(y0 + 1, src_h - 1);
        float ax = fx - x0, ay = fy - y0;
        const unsigned char* r0 = src + (size_t)y0 * src_pitch;
        const unsigned char* r1 = src + (size_t)y1 * src_pitch;
        for (int c = 0; c < 3; ++c) {
            float top = r0[x0 * 3 + c] * (1.0f - ax) + r0[x1 * 3 + c] * ax;
            float bot = r1[x0 * 3 + c] * (1.0f - ax) + r1[x1 * 3 + c] * ax;
            int out_c = rgb ? 2 - c : c;
            v[out_c] = (top * (1.0f - ay) + bot * ay) * scale + offset;
        }
    }
    for (int c = 0; c < 3; ++c) {
        size_t i = nchw ? ((size_t)c * dst_h + y) * dst_w + x : ((size_t)y * dst_w + x) * 3 + c;
        store<T>(dst + i, v[c]);
    }
}

extern "C" __global__ void letterbox_f32(const unsigned char* src, int src_h, int src_w, int src_pitch,
        float* dst, int dst_h, int dst_w, int nchw, int pad_x, int pad_y, int content_w, int content_h,
        float inv_sx, float inv_sy, int rgb, float scale, float offset, float pad) {
    letterbox<float>(src, src_h, src_w, src_pitch, dst, dst_h, dst_w, nchw, pad_x, pad_y, content_w,
                     content_h, inv_sx, inv_sy, rgb, scale, offset, pad);
}

extern "C" __global__ void letterbox_f16(const unsigned char* src, int src_h, int src_w, int src_pitch,
        unsigned short* dst, int dst_h, int dst_w, int nchw, int pad_x, int pad_y, int content_w, int content_h,
        float inv_sx, float inv_sy, int rgb, float scale, float offset, float pad) {
    letterbox<unsigned short>(src, src_h, src_w, src_pitch, dst, dst_h, dst_w, nchw, pad_x, pad_y, content_w,
                              content_h, inv_sx, inv_sy, rgb, scale, offset, pad);
}
"""

_BLOCK = (32, 8)
KERNELS = {np.dtype(np.float32): "letterbox_f32", np.dtype(np.float16): "letterbox_f16"}
"""Output dtype -> kernel name in :data:`KERNEL_SOURCE`."""
# The kernels' parameter types, in order (cuLaunchKernel packs the arguments by these).
_ARG_TYPES = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
              ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
              ctypes.c_float, ctypes.c_float, ctypes.c_int, ctypes.c_float, ctypes.c_float, ctypes.c_float)


def compile_kernels(arch: str) -> bytes:
    """Compile :data:`KERNEL_SOURCE` with NVRTC for ``arch`` (e.g. ``"sm_87"``) and return the CUBIN.

    Needs only NVRTC (cuda-python and ``libnvrtc``, e.g. ``pip install "cuda-toolkit[nvrtc]"``), not a
    GPU or a driver.

    Raises:
        CudaError: NVRTC is missing or rejects the source or the architecture (with its log).
    """
    from .backends import _cuda as cu

    prog = cu.cuda_call(cu.nvrtc.nvrtcCreateProgram(KERNEL_SOURCE.encode(), b"letterbox.cu", 0, [], []),
                        "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++14"]
        err = cu.nvrtc.nvrtcCompileProgram(prog, len(opts), opts)[0]
        if int(err) != 0:
            size = cu.cuda_call(cu.nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            log = b" " * size
            cu.cuda_call(cu.nvrtc.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
            raise cu.CudaError(f"NVRTC could not compile the pre-processing kernel for {arch}: "
                               f"{log.decode(errors='replace').strip()}")
        size = cu.cuda_call(cu.nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = b" " * size
        cu.cuda_call(cu.nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
    finally:
        cu.nvrtc.nvrtcDestroyProgram(prog)
    return cubin


@dataclass(frozen=True)
class Launch:
    """One kernel launch: grid and block sizes and the arguments with their ctypes types."""

    grid: Tuple[int, int, int]
    block: Tuple[int, int, int]
    args: Tuple[Any, ...]
    types: Tuple[Any, ...] = _ARG_TYPES


def batch_geometry(spec: ModelSpec, sizes: Sequence[Tuple[int, int]]) -> Tuple[Tuple[int, ...], List[Transform]]:
    """The batch tensor's shape for frames of ``sizes`` ((H, W) each) and each frame's Transform."""
    transforms = [transform_for(tuple(hw), spec) for hw in sizes]
    in_h = max(t.input_size[0] for t in transforms)
    in_w = max(t.input_size[1] for t in transforms)
    return tuple(spec.input_shape(len(transforms), in_h, in_w)), transforms


def kernel_launches(spec: ModelSpec, frames: Sequence[Tuple[int, int, int]], transforms: Sequence[Transform],
                    shape: Sequence[int], out_ptr: int, dtype: Any) -> List[Launch]:
    """One :class:`Launch` per frame: ``frames`` are (pointer, H, W) of C-contiguous BGR images,
    ``shape`` / ``transforms`` from :func:`batch_geometry`, ``out_ptr`` the batch tensor's memory."""
    nchw = spec.input_layout == "NCHW"
    in_h, in_w = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
    item = in_h * in_w * 3 * np.dtype(dtype).itemsize
    pad = spec.pad_value * spec.scale + spec.offset
    grid = ((in_w + _BLOCK[0] - 1) // _BLOCK[0], (in_h + _BLOCK[1] - 1) // _BLOCK[1], 1)
    launches = []
    for b, ((ptr, h, w), t) in enumerate(zip(frames, transforms)):
        rh, rw = t.content_size
        args = (ptr, h, w, w * 3, out_ptr + b * item, in_h, in_w, int(nchw), t.pad_x, t.pad_y, rw, rh, w / rw,
                h / rh, int(spec.color == "RGB"), spec.scale, spec.offset, pad)
        launches.append(Launch(grid, (_BLOCK[0], _BLOCK[1], 1), args))
    return launches


def _check_spec(spec: ModelSpec) -> None:
    if spec.interpolation != "linear":
        raise SpecError(f"GPU pre-processing resizes bilinearly; spec {spec.name!r} asks for {spec.interpolation!r} "
                        "(pass spec.replace(interpolation='linear') to accept the difference, or pre-process on "
                        "the CPU)")


def reference(frame: np.ndarray, spec: ModelSpec, input_size: Optional[Tuple[int, int]] = None,
              dtype: Any = np.float32) -> Tuple[np.ndarray, Transform]:
    """The kernel's arithmetic in numpy (float32), for one (H, W, 3) uint8 BGR frame.

    Returns the input tensor of batch 1 in the spec's layout and the frame's :class:`Transform`.
    """
    _check_spec(spec)
    t = transform_for(frame.shape[:2], spec)
    in_h, in_w = input_size or t.input_size
    rh, rw = t.content_size
    h, w = frame.shape[:2]
    f32 = np.float32
    pad = f32(spec.pad_value * spec.scale + spec.offset)
    out = np.full((in_h, in_w, 3), pad, f32)
    ys, xs = np.arange(rh, dtype=f32), np.arange(rw, dtype=f32)
    fy = np.clip((ys + f32(0.5)) * f32(h / rh) - f32(0.5), 0, h - 1).astype(f32)
    fx = np.clip((xs + f32(0.5)) * f32(w / rw) - f32(0.5), 0, w - 1).astype(f32)
    y0, x0 = fy.astype(np.int64), fx.astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    ay, ax = (fy - y0)[:, None, None], (fx - x0)[None, :, None]
    src = frame.astype(f32)
    top = src[y0][:, x0] * (1 - ax) + src[y0][:, x1] * ax
    bot = src[y1][:, x0] * (1 - ax) + src[y1][:, x1] * ax
    content = (top * (1 - ay) + bot * ay) * f32(spec.scale) + f32(spec.offset)
    if spec.color == "RGB":
        content = content[:, :, ::-1]
    out[t.pad_y:t.pad_y + rh, t.pad_x:t.pad_x + rw] = content
    out = out.transpose(2, 0, 1) if spec.input_layout == "NCHW" else out
    return out[None].astype(dtype), t


class GpuPreprocessor:
    """Frames on the device -> the model's input tensor on the device (compiled once per object).

    Args:
        spec: the model's :class:`ModelSpec` (``interpolation`` must be ``linear``).
        dtype: ``float32`` or ``float16`` (the model input's).

    The output is a CuPy-free device buffer (:class:`~edgepose.backends._cuda.DeviceBuffer`) exposed
    with ``__cuda_array_interface__`` (:meth:`__call__` returns an object the TensorRT backend binds
    directly). Needs cuda-python and a GPU; ``close()`` frees the module and the output buffer.
    """

    def __init__(self, spec: ModelSpec, dtype: Any = np.float32) -> None:
        from .backends import _cuda

        _check_spec(spec)
        self.spec = spec
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"dtype must be float32 or float16, got {self.dtype}")
        self._cuda = _cuda
        self._module = None
        self._out: Optional[Any] = None
        _cuda.cuda_call(_cuda.runtime.cudaFree(0), "cudaFree(0) (context initialisation)")
        self._module, self._kernel = self._compile()

    def _compile(self) -> Tuple[Any, Any]:
        cu = self._cuda
        dev = cu.cuda_call(cu.runtime.cudaGetDevice(), "cudaGetDevice")
        major, minor = cu.device_properties(dev).compute_capability
        cubin = compile_kernels(f"sm_{major}{minor}")
        module = cu.cuda_call(cu.driver.cuModuleLoadData(cubin), "cuModuleLoadData")
        name = KERNELS[self.dtype].encode()
        try:
            kernel = cu.cuda_call(cu.driver.cuModuleGetFunction(module, name), "cuModuleGetFunction")
        except BaseException:
            cu.driver.cuModuleUnload(module)  # not yet owned by self: close() would not see it
            raise
        return module, kernel

    def __call__(self, frames: Sequence[Any], stream: Optional[Any] = None) -> Tuple[Any, List[Transform]]:
        """Pre-process device frames (each (H, W, 3) uint8 BGR, C-contiguous rows, on this GPU).

        Returns:
            ``(tensor, transforms)``: the batch tensor on the device (valid until the next call) with
            ``__cuda_array_interface__``, and one :class:`Transform` per frame.
        """
        cu = self._cuda
        if self._module is None:
            raise RuntimeError("GpuPreprocessor used after close()")
        if not isinstance(frames, (list, tuple)):
            frames = [frames]
        arrays = []
        for i, f in enumerate(frames):
            da = cu.device_array(f)
            if da is None:
                raise InputError(f"frames[{i}]: expected a device array (CuPy, PyTorch CUDA tensor, ...); "
                                 "numpy frames go through edgepose.preprocess")
            if da.dtype != np.uint8 or len(da.shape) != 3 or da.shape[2] != 3 or not da.contiguous:
                raise InputError(f"frames[{i}]: expected a C-contiguous (H, W, 3) uint8 BGR device array, got "
                                 f"{da.dtype} {da.shape}")
            arrays.append(da)
        shape, transforms = batch_geometry(self.spec, [tuple(d.shape[:2]) for d in arrays])
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        if self._out is None or self._out.nbytes < nbytes:
            if self._out is not None:
                self._out.close()
            self._out = cu.DeviceBuffer(nbytes)
        handle = stream.handle if stream is not None else 0
        frames_at = [(da.ptr, da.shape[0], da.shape[1]) for da in arrays]
        for launch in kernel_launches(self.spec, frames_at, transforms, shape, self._out.ptr, self.dtype):
            cu.cuda_call(cu.driver.cuLaunchKernel(self._kernel, *launch.grid, *launch.block, 0, handle,
                                                  (launch.args, launch.types), 0), "cuLaunchKernel(letterbox)")
        return _DeviceTensor(self._out, shape, self.dtype), transforms

    def close(self) -> None:
        """Free the output buffer and unload the kernel. Idempotent."""
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._module is not None:
            self._cuda.cuda_call(self._cuda.driver.cuModuleUnload(self._module), "cuModuleUnload")
            self._module = None

    def __enter__(self) -> GpuPreprocessor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _DeviceTensor:
    """A view of a device buffer with ``__cuda_array_interface__`` (CuPy / PyTorch can wrap it too)."""

    def __init__(self, buffer: Any, shape: Tuple[int, ...], dtype: np.dtype) -> None:
        self._buffer, self.shape, self.dtype = buffer, tuple(shape), dtype

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self._buffer.ptr, False),
                "version": 3, "strides": None}
