"""The TensorRT side: what runs without a GPU (calibration caches, engine sidecars, profiles, CUDA error
mapping, device-array hand-over parsing, the GPU pre-processing arithmetic, the backend's errors)
and, marked ``gpu``, what needs CUDA (buffers, streams, graphs, NVRTC pre-processing) or TensorRT."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need

from edgepose import Poses
from edgepose.backends import REGISTRY, create
from edgepose.errors import BackendUnavailable, InputError, ModelFormatError, SpecError
from edgepose.formats.calib import CalibrationCache, CalibrationCacheWarning, for_tensorrt, read_calibration_cache
from edgepose.formats.engine import (
    BuildOptions,
    Profile,
    parse_profile,
    profile_from_batch,
    read_plan,
    read_sidecar,
    sidecar_path,
    trt_version_code,
    write_engine,
)
from edgepose.preprocess import preprocess
from edgepose.spec import ModelSpec

CAL = """TRT-8601-EntropyCalibration2
input_1:0: 3c010a14
conv1/BiasAdd:0: 3d4ccccd
heatmap_out/BiasAdd:0: 0
"""
PLAN = b"ftrt" + bytes(range(256)) * 3  # bytes with a plan's tag (not a loadable engine)


def _cuda_ready() -> bool:
    try:
        from edgepose.backends import _cuda
    except Exception:
        return False
    return _cuda.device_count() > 0


HAS_CUDA = _cuda_ready()
HAS_TRT = REGISTRY["tensorrt"].can_run()


# -- INT8 calibration caches ---------------------------------------------------------------------

def test_calibration_cache_parse_write_round_trip() -> None:
    cache = CalibrationCache.parse(CAL)
    assert (cache.version, cache.algorithm) == (8601, "EntropyCalibration2")
    assert list(cache.scales) == ["input_1:0", "conv1/BiasAdd:0", "heatmap_out/BiasAdd:0"]  # names with ':'
    assert cache.scales["input_1:0"] == struct.unpack(">f", bytes.fromhex("3c010a14"))[0]
    assert cache.scales["conv1/BiasAdd:0"] == pytest.approx(0.05)
    assert cache.scales["heatmap_out/BiasAdd:0"] == 0.0  # hex of any width: "0"
    assert cache.dynamic_ranges()["conv1/BiasAdd:0"] == pytest.approx(0.05 * 127)
    assert cache.to_text() == CAL  # TensorRT's own spelling, byte for byte
    assert CalibrationCache.parse(cache.to_bytes()) == cache


# NV_TENSORRT_VERSION as NvInferVersion.h defines it, the number in a cache header: TensorRT 8.x
# major*1000 + minor*100 + patch (TAO's 8.6.1 caches start "TRT-8601-"), TensorRT 10 and later
# NV_TENSORRT_VERSION_INT = major*10000 + minor*100 + patch (real 10.3 caches start "TRT-100300-").
@pytest.mark.parametrize("version, code", [
    ("8.6.1", 8601), ("8.6.1.6", 8601), ("8.5.3", 8503), ("10.3.0", 100300), ("10.3.0.26", 100300),
    ("10.10.0", 101000), ("10.14.1", 101401), ("11.0.0", 110000),
])
def test_trt_version_code_is_nv_tensorrt_version(version: str, code: int) -> None:
    assert trt_version_code(version) == code


@pytest.mark.parametrize("version", ["10", "x.y", "8.10.0", "10.100.0", "10.3.100"])
def test_trt_version_code_refuses_what_has_no_code(version: str) -> None:
    with pytest.raises(ValueError, match="TensorRT version"):
        trt_version_code(version)


def test_calibration_cache_header_rewrite_warns(tmp_path: Path) -> None:
    cache = CalibrationCache.parse(CAL)
    with pytest.warns(CalibrationCacheWarning, match="TRT-8601-EntropyCalibration2 rewritten to "
                                                     "TRT-100300-EntropyCalibration2"):
        new = for_tensorrt(cache, "10.3.0")
    assert new.header == "TRT-100300-EntropyCalibration2" and new.scales == cache.scales
    assert for_tensorrt(new, "10.3.0") is new  # already right: no warning (warnings are errors here)
    path = tmp_path / "cal.bin"
    path.write_text(new.to_text())
    assert read_calibration_cache(path) == new


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("TRT-abc-Entropy\nx: 1\n", "line 1 must be a header"),
    ("TRT-8601-EntropyCalibration2\n", "no tensors"),
    ("TRT-8601-EntropyCalibration2\nno colon here\n", "line 2 is not"),
    ("TRT-8601-EntropyCalibration2\na: 1ffffffff\n", "wider than a float32"),
    ("TRT-8601-EntropyCalibration2\na: 1\na: 2\n", "appears twice"),
    (b"\xff\xfe\x00", "not text"),
])
def test_calibration_cache_errors(text: object, message: str) -> None:
    with pytest.raises(ModelFormatError, match=message):
        CalibrationCache.parse(text)  # type: ignore[arg-type]


# -- engine files, sidecars, profiles --------------------------------------------------------------

def test_profiles_as_tao_converter_and_trtexec_spell_them() -> None:
    p = parse_profile("input_1:0,1x288x384x3,8x288x384x3,16x288x384x3")
    assert p == Profile("input_1:0", (1, 288, 384, 3), (8, 288, 384, 3), (16, 288, 384, 3))
    assert p.max_batch == 16
    assert p.trtexec_args() == ["--minShapes=input_1:0:1x288x384x3", "--optShapes=input_1:0:8x288x384x3",
                                "--maxShapes=input_1:0:16x288x384x3"]
    assert parse_profile("a,b,1x3,2x3,4x3").input_name == "a,b"  # a name with a comma
    assert Profile.from_dict(p.to_dict()) == p
    for bad, message in (("input,1x3,2x3", "NAME,MIN,OPT,MAX"), ("x,1x3,2x3,1x3", "min <= opt <= max"),
                         ("x,1x3,2x3x1,4x3", "same number of dimensions"), ("x,1x0,1x1,1x1", "positive"),
                         ("x,axb,1x1,1x1", "positive integers")):
        with pytest.raises(ValueError, match=message):
            parse_profile(bad)
    bpn = profile_from_batch("input_1:0", (None, 288, 384, 3), (1, 4, 8))
    assert (bpn.min, bpn.opt, bpn.max) == ((1, 288, 384, 3), (4, 288, 384, 3), (8, 288, 384, 3))
    tf = profile_from_batch("image", ("batch", "height", "width", 3), (1, 1, 2), (368, 432))
    assert tf.max == (2, 368, 432, 3)
    nchw = profile_from_batch("image", (None, 3, None, None), (1, 1, 1), (256, 456), layout="NCHW")
    assert nchw.opt == (1, 3, 256, 456)
    with pytest.raises(ValueError, match="axis 1 is dynamic"):
        profile_from_batch("image", ("batch", "height", "width", 3), (1, 1, 1))


def test_build_options_rules() -> None:
    assert BuildOptions().precision == "fp16"
    assert BuildOptions("int8").calibration_cache is None  # a Q/DQ model needs none (formats/precision.py)
    with pytest.raises(ValueError, match="only used for int8"):
        BuildOptions("fp16", calibration_cache="cal.bin")
    with pytest.raises(ValueError, match="precision"):
        BuildOptions("fp64")
    with pytest.raises(ValueError, match="workspace_mib"):
        BuildOptions(workspace_mib=0)
    p = parse_profile("x,1x3,1x3,2x3")
    with pytest.raises(ValueError, match="two profiles"):
        BuildOptions(profiles=(p, p))
    with pytest.raises(ValueError, match="same number of profiles"):  # one per optimisation profile
        BuildOptions(profiles=(p, parse_profile("x,1x3,1x3,4x3"), parse_profile("y,1x3,1x3,2x3")))
    d = BuildOptions("int8", (p,), 512, "cal.bin").to_dict()
    assert d == {"precision": "int8", "profiles": [p.to_dict()], "workspace_mib": 512, "calibration_cache": "cal.bin"}


def test_engine_sidecar_carries_the_spec(tmp_path: Path) -> None:
    spec = ModelSpec.bodyposenet()
    engine = tmp_path / "bpn.engine"
    side = write_engine(engine, PLAN, spec.to_dict(), {"tensorrt": "10.3.0", "precision": "fp16"})
    assert side == sidecar_path(engine) == tmp_path / "bpn.engine.edgepose.json"
    assert engine.read_bytes() == PLAN  # the plan stays a plain plan, loadable by trtexec
    info = read_sidecar(engine, read_plan(engine))
    assert info is not None and ModelSpec.from_dict(info.spec) == spec
    assert info.engine_sha256 == hashlib.sha256(PLAN).hexdigest() and info.build["precision"] == "fp16"
    # The spec reaches ModelSpec.detect the way the TensorRT backend hands it over (metadata).
    from edgepose.backends.base import TensorSpec
    from edgepose.spec import ModelInfo

    tensors = ModelInfo([TensorSpec("input_1:0", (None, 288, 384, 3))],
                        [TensorSpec("heatmap_out/BiasAdd:0", (None, 36, 48, 19)),
                         TensorSpec("conv2d_transpose_1/BiasAdd:0", (None, 144, 192, 38))],
                        {"edgepose_spec": json.dumps(dict(info.spec, pad_value=0.0))})
    detected = ModelSpec.detect(tensors)
    assert detected.pad_value == 0.0 and detected.replace(pad_value=128.0) == spec
    # A sidecar of another engine, a broken sidecar, an engine given as bytes.
    with pytest.raises(SpecError, match="describes another engine"):
        read_sidecar(engine, PLAN + b"x")
    side.write_text("{not json")
    with pytest.raises(SpecError, match="cannot read it as JSON"):
        read_sidecar(engine)
    side.write_text(json.dumps({"spec": {}}))
    with pytest.raises(SpecError, match="not an edgepose engine sidecar"):
        read_sidecar(engine)
    assert read_sidecar(PLAN) is None and read_sidecar(tmp_path / "other.engine") is None
    with pytest.raises(ModelFormatError, match="not a serialized TensorRT plan"):
        write_engine(tmp_path / "x.engine", b"nope", None, {})


def test_read_plan_strips_an_ultralytics_header(tmp_path: Path) -> None:
    meta = json.dumps({"imgsz": [288, 384]}).encode()
    assert read_plan(len(meta).to_bytes(4, "little") + meta + PLAN) == PLAN
    assert read_plan(PLAN) == PLAN
    with pytest.raises(ModelFormatError, match="not a serialized TensorRT engine"):
        read_plan(b"\x08\x07\x12" + bytes(20))
    with pytest.raises(ModelFormatError, match="empty"):
        read_plan(b"")
    with pytest.raises(ModelFormatError, match="not found"):
        read_plan(tmp_path / "missing.engine")


# -- the backend where TensorRT cannot run -----------------------------------------------------------

@pytest.mark.skipif(HAS_TRT, reason="TensorRT can run here")
def test_tensorrt_unavailable_is_one_clear_error(tmp_path: Path) -> None:
    why = REGISTRY["tensorrt"].reason()
    assert why is not None and ("pip install tensorrt" in why or "CUDA device" in why)
    engine = tmp_path / "bpn.engine"
    engine.write_bytes(PLAN)
    with pytest.raises(BackendUnavailable, match=r"backend 'tensorrt' cannot run here: .*(pip install|CUDA)"):
        create(engine, "tensorrt")
    with pytest.raises(BackendUnavailable, match="bpn.engine is a TensorRT engine, and the TensorRT backend cannot "
                                                 "run here"):
        create(engine)  # auto: nothing else runs engines
    pytest.importorskip("onnxruntime")
    with create(need(MODELS / "tfpose_mobilenet_v2_small.onnx")) as b:  # auto falls to ORT, and says why
        sel = b.describe()["selection"]
        ov = REGISTRY["openvino"]  # auto takes OpenVINO before ONNX Runtime on a bf16 CPU where it is installed
        cpu = "openvino" if ov.reason() is None and ov.auto_why_not() is None else "onnxruntime"
        assert sel["chosen"] == cpu and sel["skipped"]["tensorrt"] == f"cannot run here: {why}"


def test_cuda_layer_without_a_device() -> None:
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from edgepose.backends import _cuda
    rt = _cuda.runtime
    assert _cuda.cuda_call((rt.cudaError_t.cudaSuccess, 7), "x") == 7
    assert _cuda.cuda_call((rt.cudaError_t.cudaSuccess,), "x") is None
    assert _cuda.cuda_call((rt.cudaError_t.cudaSuccess, 1, 2), "x") == (1, 2)
    with pytest.raises(_cuda.CudaError, match=r"cudaMalloc\(64\) failed: cudaErrorMemoryAllocation"):
        _cuda.cuda_call((rt.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc(64)")
    with pytest.raises(_cuda.CudaError, match="cuInit failed: CUDA_ERROR_NO_DEVICE"):
        _cuda.cuda_call((_cuda.driver.CUresult.CUDA_ERROR_NO_DEVICE,), "cuInit")
    if not HAS_CUDA:
        assert _cuda.device_count() == 0
        with pytest.raises(_cuda.CudaError, match="cudaMalloc"):
            _cuda.DeviceBuffer(1024)  # a real call, a real failure: no driver here


@pytest.mark.skipif(HAS_CUDA, reason="a GPU is here: the gpu tests run these for real")
def test_cuda_objects_without_a_device_raise_cuda_errors() -> None:
    """Each CUDA-owning object's first call reaches the driver with arguments cuda-python accepts (a
    wrong signature would raise TypeError) and comes back as one CudaError naming that call."""
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from edgepose.backends import _cuda
    from edgepose.gpu_preprocess import GpuPreprocessor

    for make, call in [(_cuda.Stream, "cudaStreamCreateWithFlags"), (lambda: _cuda.DeviceBuffer(64), "cudaMalloc"),
                       (lambda: _cuda.HostBuffer(64, mapped=False), "cudaHostAlloc"),
                       (lambda: _cuda.HostBuffer(64, mapped=True), "cudaHostAlloc"),
                       (lambda: GpuPreprocessor(ModelSpec.bodyposenet()), "cudaFree")]:
        with pytest.raises(_cuda.CudaError, match=f"{call}.*failed: cudaError(InsufficientDriver|NoDevice)"):
            make()


class _CaiArray:
    """An object that offers ``__cuda_array_interface__`` as CuPy / Numba / PyTorch do (pointer only)."""

    def __init__(self, shape: tuple, typestr: str, strides: object = None) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0x7F0000001000, False),
                                         "version": 3, "strides": strides}


def test_device_array_hand_over_parsing() -> None:
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from edgepose.backends import _cuda
    da = _cuda.device_array(_CaiArray((2, 288, 384, 3), "<f4"))
    assert (da.ptr, da.shape, da.dtype, da.contiguous) == (0x7F0000001000, (2, 288, 384, 3), np.float32, True)
    assert da.nbytes == 2 * 288 * 384 * 3 * 4
    strided = _cuda.device_array(_CaiArray((4, 3), "<f2", strides=(12, 2)))
    assert strided.contiguous is False and strided.dtype == np.float16
    assert _cuda.device_array(_CaiArray((4, 3), "<f2", strides=(6, 2))).contiguous is True
    assert _cuda.device_array(np.zeros((2, 2), np.float32)) is None  # numpy (even with __dlpack__) is host memory


# -- GPU pre-processing: the kernel's arithmetic against the CPU path ---------------------------------

@pytest.mark.parametrize("spec", [ModelSpec.bodyposenet(), ModelSpec.tfpose().replace(interpolation="linear"),
                                  ModelSpec.omz_hpe0001().replace(interpolation="linear")],
                         ids=["bodyposenet", "tfpose", "omz-nchw"])
def test_gpu_preprocess_arithmetic_matches_cpu(spec: ModelSpec) -> None:
    from edgepose.gpu_preprocess import reference

    frame = cv2.imread(str(need(COCO_MINI / "images" / "000000000790.jpg")))
    cpu, (t_cpu,) = preprocess(frame, spec)
    gpu, t_gpu = reference(frame, spec)
    assert t_gpu == t_cpu and gpu.shape == cpu.shape
    # OpenCV rounds the resized uint8 pixel and uses 11-bit weights; the kernel stays in float.
    tol = 1.01 * abs(spec.scale)
    assert np.abs(gpu - cpu).max() <= tol
    assert np.abs(gpu - cpu).mean() < 0.3 * abs(spec.scale)


def test_gpu_preprocess_refuses_non_linear() -> None:
    from edgepose.gpu_preprocess import reference

    with pytest.raises(SpecError, match="bilinearly.*'cubic'"):
        reference(np.zeros((10, 10, 3), np.uint8), ModelSpec.tfpose())


# -- on a GPU ---------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs an NVIDIA GPU with its driver and cuda-python")
def test_gpu_buffers_stream_graph_round_trip() -> None:
    from edgepose.backends import _cuda

    data = np.arange(1 << 16, dtype=np.float32)
    with _cuda.Stream() as stream, _cuda.DeviceBuffer(data.nbytes) as dev, \
            _cuda.HostBuffer(data.nbytes) as pinned, _cuda.HostBuffer(data.nbytes, mapped=True) as mapped:
        src = pinned.view(data.shape, data.dtype)
        src[:] = data
        dev.copy_from_host(src, stream)
        out = mapped.view(data.shape, data.dtype)
        out[:] = 0
        graph = _cuda.Graph(stream, lambda: _cuda.cuda_call(_cuda.runtime.cudaMemcpyAsync(
            mapped.device_ptr, dev.ptr, data.nbytes, _cuda.runtime.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
            stream.handle), "copy"))
        graph.launch()
        stream.synchronize()
        np.testing.assert_array_equal(out, data)  # written by the device straight into mapped host memory
        graph.close()
    assert dev.closed and pinned.closed


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs an NVIDIA GPU with its driver and cuda-python")
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_gpu_preprocess_kernel_matches_reference(dtype: type) -> None:
    cupy = pytest.importorskip("cupy")
    from edgepose.gpu_preprocess import GpuPreprocessor, reference

    frame = cv2.imread(str(need(COCO_MINI / "images" / "000000000790.jpg")))
    for spec in (ModelSpec.bodyposenet(), ModelSpec.omz_hpe0001().replace(interpolation="linear")):
        with GpuPreprocessor(spec, dtype) as pre:
            tensor, (t,) = pre([cupy.asarray(frame)])
            cupy.cuda.runtime.deviceSynchronize()
            got = cupy.asarray(cupy.ndarray(tensor.shape, dtype, cupy.cuda.MemoryPointer(
                cupy.cuda.UnownedMemory(tensor.__cuda_array_interface__["data"][0], int(np.prod(tensor.shape)) *
                                        np.dtype(dtype).itemsize, tensor), 0))).get()
        want, t_ref = reference(frame, spec, dtype=dtype)
        assert t == t_ref
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=1e-5 if dtype is
                                   np.float32 else 2e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT (10 or 11) and an NVIDIA GPU")
def test_tensorrt_engine_matches_onnxruntime(tmp_path: Path) -> None:
    from edgepose.backends.tensorrt import build_engine
    from edgepose.formats.engine import write_engine as write
    from edgepose.pipeline import EdgePose

    src = need(MODELS / "omz_human_pose_estimation_0001.onnx")
    spec = ModelSpec.omz_hpe0001().replace(input_size=(256, 456), resize="letterbox")
    options = BuildOptions("fp32", (profile_from_batch("image", (None, 3, None, None), (1, 2, 4), (256, 456),
                                                       "NCHW"),))
    engine = tmp_path / "omz.engine"
    write(engine, build_engine(src, options), spec.to_dict(), {"precision": "fp32"})
    frame = cv2.imread(str(need(COCO_MINI / "images" / "000000000790.jpg")))
    with EdgePose(str(engine)) as trt_model, EdgePose(str(src), backend="onnxruntime", spec=spec) as ort_model:
        assert trt_model.backend.name == "tensorrt" and trt_model.spec == spec
        a, b = trt_model.infer(frame), ort_model.infer(frame)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.keypoints[..., :2], b.keypoints[..., :2], atol=1.0)


class _DLPackOnly:
    """A CuPy array seen through DLPack alone (as JAX arrays are), to take the DLPack hand-over."""

    def __init__(self, array: object) -> None:
        self._a, self.shape = array, array.shape

    def __dlpack_device__(self) -> tuple:
        return self._a.__dlpack_device__()

    def __dlpack__(self, **kwargs: object) -> object:
        return self._a.__dlpack__(**kwargs)


def _assert_same_poses(got: Poses, want: Poses, tol: float) -> None:
    """The same persons: as many, and almost every keypoint of ``want`` has one of its type in ``got``
    within ``tol`` px (the GPU resize differs from OpenCV's by up to one grey level, so a weak keypoint
    may come and go)."""
    assert len(got) == len(want) > 0
    near = total = 0
    for k in range(want.keypoints.shape[1]):
        a = got.keypoints[got.visible[:, k], k, :2]
        for xy in want.keypoints[want.visible[:, k], k, :2]:
            total += 1
            near += bool(len(a)) and float(np.min(np.linalg.norm(a - xy, axis=1))) <= tol
    assert near >= 0.95 * total, f"{near} of {total} keypoints within {tol} px"


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT (10 or 11) and an NVIDIA GPU")
def test_gpu_frames_give_the_poses_of_host_frames(tmp_path: Path) -> None:
    cupy = pytest.importorskip("cupy")
    from edgepose.backends.tensorrt import build_engine
    from edgepose.formats.engine import write_engine as write
    from edgepose.pipeline import EdgePose

    src = need(MODELS / "omz_human_pose_estimation_0001.onnx")
    spec = ModelSpec.omz_hpe0001().replace(input_size=(256, 456), resize="letterbox", interpolation="linear")
    options = BuildOptions("fp32", (profile_from_batch("image", (None, 3, None, None), (1, 2, 4), (256, 456),
                                                       "NCHW"),))
    engine = tmp_path / "omz.engine"
    write(engine, build_engine(src, options), spec.to_dict(), {"precision": "fp32"})
    a = cv2.imread(str(need(COCO_MINI / "images" / "000000000790.jpg")))
    b = cv2.resize(a[40:, 10:], (500, 420), interpolation=cv2.INTER_AREA)  # another size, another letterbox
    with EdgePose(str(engine)) as model:
        assert model.backend.name == "tensorrt"
        on_host = model.infer_batch([a, b])
        _assert_same_poses(model.infer(cupy.asarray(a)), on_host[0], tol=2.0)
        on_gpu = model.infer_batch([cupy.asarray(a), _DLPackOnly(cupy.asarray(b))])
        for got, want in zip(on_gpu, on_host):
            _assert_same_poses(got, want, tol=2.0)
        with pytest.raises(InputError, match=r"frames\[0\]: .*\(strided\)"):
            model.infer(cupy.asarray(a)[:, ::2])
