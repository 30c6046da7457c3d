"""The GPU pre-processing kernel without a GPU.

1. NVRTC (a compiler library that needs no GPU or driver) compiles :data:`KERNEL_SOURCE` for the
   architectures edgepose targets.
2. The same source, built as host C++ with a small shim (thread indices, ``__device__``), runs on the
   CPU: every thread of every block of the grid that :func:`kernel_launches` plans, with the very
   argument values and ctypes types that ``GpuPreprocessor`` hands to ``cuLaunchKernel``, packed the
   way ``cuLaunchKernel`` packs them (an array of pointers to the values). Its output is compared
   with :func:`reference` and so, through ``tests/test_tensorrt.py``, with the CPU pre-processing.

What this does not cover: the driver calls (module load, launch, streams). Those run only in the
``gpu`` tests.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from typing import Any, List, Sequence, Tuple

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, need

from edgepose.gpu_preprocess import KERNEL_SOURCE, KERNELS, Launch, batch_geometry, kernel_launches, reference
from edgepose.spec import ModelSpec


def _nvrtc_available() -> bool:
    try:
        from cuda.bindings import nvrtc

        return int(nvrtc.nvrtcVersion()[0]) == 0
    except Exception:  # cuda-python or libnvrtc missing
        return False


@pytest.mark.skipif(not _nvrtc_available(), reason="needs cuda-python and NVRTC (pip install 'cuda-toolkit[nvrtc]')")
@pytest.mark.parametrize("arch", ["sm_75", "sm_87", "sm_90"], ids=["turing-t4", "jetson-orin", "hopper-h100"])
def test_kernel_compiles_with_nvrtc(arch: str) -> None:
    from edgepose.gpu_preprocess import compile_kernels

    cubin = compile_kernels(arch)
    assert cubin[:4] == b"\x7fELF"  # a CUBIN is an ELF image
    for name in KERNELS.values():
        assert name.encode() + b"\0" in cubin  # both entry points, unmangled (extern "C")


@pytest.mark.skipif(not _nvrtc_available(), reason="needs cuda-python and NVRTC")
def test_nvrtc_errors_are_edgepose_errors() -> None:
    from edgepose.backends._cuda import CudaError
    from edgepose.gpu_preprocess import compile_kernels

    with pytest.raises(CudaError, match="could not compile the pre-processing kernel for sm_1: .*gpu-architecture"):
        compile_kernels("sm_1")


# -- the kernel source on the CPU -------------------------------------------------------------------

HOST_SHIM = r"""
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <utility>
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, blockDim, threadIdx;  // the one thread running at a time
#define __device__
#define __global__
using std::min;
static unsigned short half_bits(float v) {
    _Float16 h = static_cast<_Float16>(v);  // IEEE half, round to nearest even
    unsigned short bits;
    std::memcpy(&bits, &h, sizeof bits);
    return bits;
}
"""

HOST_LAUNCHER = r"""
// cuLaunchKernel's kernelParams: one pointer per parameter, to a value of the parameter's type.
template <typename... A, std::size_t... I>
static void call(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<A*>(params[I])...);
}
template <typename... A>
static void grid(void (*kernel)(A...), void** params, const unsigned* g, const unsigned* b) {
    blockDim = {b[0], b[1], b[2]};
    for (unsigned bz = 0; bz < g[2]; ++bz)
        for (unsigned by = 0; by < g[1]; ++by)
            for (unsigned bx = 0; bx < g[0]; ++bx)
                for (unsigned tz = 0; tz < b[2]; ++tz)
                    for (unsigned ty = 0; ty < b[1]; ++ty)
                        for (unsigned tx = 0; tx < b[0]; ++tx) {
                            blockIdx = {bx, by, bz};
                            threadIdx = {tx, ty, tz};
                            call(kernel, params, std::index_sequence_for<A...>{});
                        }
}
extern "C" void run_letterbox_f32(void** p, const unsigned* g, const unsigned* b) { grid(letterbox_f32, p, g, b); }
extern "C" void run_letterbox_f16(void** p, const unsigned* g, const unsigned* b) { grid(letterbox_f16, p, g, b); }
"""


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("needs a C++ compiler to build the kernel source for the CPU")
    folder = tmp_path_factory.mktemp("kernel")
    src, lib = folder / "letterbox_host.cpp", folder / "letterbox_host.so"
    src.write_text(HOST_SHIM + KERNEL_SOURCE + HOST_LAUNCHER)
    built = subprocess.run([cxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-ffp-contract=off", "-Wall",
                            "-Werror", str(src), "-o", str(lib)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return ctypes.CDLL(str(lib))


def _run(lib: ctypes.CDLL, name: str, launch: Launch) -> None:
    values = [t(a) for a, t in zip(launch.args, launch.types)]
    params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    fn = getattr(lib, f"run_{name}")
    fn.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint))
    fn(params, (ctypes.c_uint * 3)(*launch.grid), (ctypes.c_uint * 3)(*launch.block))


def _host_preprocess(lib: ctypes.CDLL, frames: Sequence[np.ndarray], spec: ModelSpec,
                     dtype: Any) -> Tuple[np.ndarray, List[Any]]:
    """What GpuPreprocessor does, with host memory standing in for device memory."""
    shape, transforms = batch_geometry(spec, [f.shape[:2] for f in frames])
    out = np.full(shape, np.nan, dtype)  # every element must be written
    at = [(f.ctypes.data, f.shape[0], f.shape[1]) for f in frames]
    for launch in kernel_launches(spec, at, transforms, shape, out.ctypes.data, dtype):
        assert len(launch.args) == len(launch.types)
        _run(lib, KERNELS[np.dtype(dtype)], launch)
    return out, transforms


SPECS = [ModelSpec.bodyposenet(), ModelSpec.tfpose().replace(interpolation="linear"),
         ModelSpec.omz_hpe0001().replace(interpolation="linear")]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("spec", SPECS, ids=["bodyposenet-letterbox", "tfpose-dynamic", "omz-nchw"])
def test_kernel_source_matches_its_reference(host_kernel: ctypes.CDLL, spec: ModelSpec, dtype: Any) -> None:
    """A batch of a landscape and a portrait COCO frame: content, padding, layout, batch offsets."""
    land = cv2.imread(str(need(COCO_MINI / "images" / "000000000790.jpg")))
    tall = np.ascontiguousarray(cv2.rotate(land, cv2.ROTATE_90_CLOCKWISE)[:, 40:])
    out, transforms = _host_preprocess(host_kernel, [land, tall], spec, dtype)
    assert not np.isnan(out.astype(np.float32)).any()
    in_hw = out.shape[1:3] if spec.input_layout == "NHWC" else out.shape[2:4]
    for item, frame, t in zip(out, [land, tall], transforms):
        expected, t_ref = reference(frame, spec, input_size=tuple(in_hw), dtype=np.float32)
        assert t_ref == t
        got = item.astype(np.float32)
        if dtype == np.float32:
            # Same float32 operations in the same order (no FMA contraction): equal to rounding.
            np.testing.assert_allclose(got, expected[0], rtol=0, atol=1e-5 * max(1.0, abs(spec.scale) * 255))
        else:
            # Rounded to half: float32 values a rounding apart can land one half-ulp step apart.
            half = expected[0].astype(np.float16)
            steps = np.abs(item.view(np.int16).astype(np.int32) - half.view(np.int16).astype(np.int32))
            assert steps.max() <= 1 and (steps == 0).mean() > 0.99


def test_kernel_writes_padding_where_the_reference_does(host_kernel: ctypes.CDLL) -> None:
    """Letterbox bars hold pad_value * scale + offset, and nothing of the frame leaks into them."""
    spec = ModelSpec.bodyposenet()
    frame = np.full((100, 400, 3), 255, np.uint8)  # very wide: bars above and below
    out, (t,) = _host_preprocess(host_kernel, [frame], spec, np.float32)
    pad = np.float32(spec.pad_value * spec.scale + spec.offset)
    assert t.pad_y > 0
    assert (out[0, :t.pad_y] == pad).all() and (out[0, t.pad_y + t.content_size[0]:] == pad).all()
    content = out[0, t.pad_y:t.pad_y + t.content_size[0], t.pad_x:t.pad_x + t.content_size[1]]
    assert np.allclose(content, np.float32(255 * spec.scale + spec.offset))
