"""EdgePose end to end: real people found on coco_mini with the OMZ model, batches equal single
frames, stride / transform plumbing checked through a backend that renders a known pose, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI, MODELS, need

pytest.importorskip("onnxruntime")

from edgepose import DecoderConfig, Poses  # noqa: E402
from edgepose.backends.base import BackendBase, TensorSpec  # noqa: E402
from edgepose.errors import InputError, ModelFormatError, SpecError  # noqa: E402
from edgepose.pipeline import STAGES, EdgePose  # noqa: E402
from edgepose.preprocess import transform_for  # noqa: E402
from edgepose.render import render_heatmaps, render_pafs  # noqa: E402
from edgepose.spec import ModelSpec  # noqa: E402

OMZ = MODELS / "omz_human_pose_estimation_0001.onnx"


@pytest.fixture(scope="module")
def omz() -> EdgePose:
    with EdgePose(need(OMZ), backend="onnxruntime", threads=2) as model:
        yield model


def _image(coco: Dict[str, Any], image_id: int) -> np.ndarray:
    info = next(i for i in coco["images"] if i["id"] == image_id)
    frame = cv2.imread(str(need(COCO_MINI / "images" / info["file_name"])))
    assert frame is not None and frame.shape[:2] == (info["height"], info["width"])
    return frame


def _found_fraction(poses: Poses, person: Dict[str, Any]) -> float:
    """Best fraction, over predicted persons, of the person's labelled COCO keypoints that a predicted
    keypoint of the same type lies within max(6 px, 0.15 sqrt(area)) of."""
    gt = np.asarray(person["keypoints"], np.float64).reshape(17, 3)
    labelled = gt[:, 2] > 0
    tol = max(6.0, 0.15 * np.sqrt(person["area"]))
    best = 0.0
    for kp in poses.keypoints[:, list(poses.topology.to_coco17)]:
        near = (kp[:, 2] > 0) & labelled & (np.linalg.norm(kp[:, :2] - gt[:, :2], axis=1) < tol)
        best = max(best, near.sum() / labelled.sum())
    return best


@pytest.mark.parametrize("image_id", [196141, 217285])
def test_omz_finds_the_annotated_people(omz: EdgePose, coco_annotations: Dict[str, Any], image_id: int) -> None:
    frame = _image(coco_annotations, image_id)
    poses = omz.infer(frame)
    people = [a for a in coco_annotations["annotations"]
              if a["image_id"] == image_id and not a["iscrowd"] and a["num_keypoints"] >= 5]
    assert people
    fractions = [_found_fraction(poses, p) for p in people]
    found = sum(f >= 0.5 for f in fractions)
    assert found >= 0.8 * len(people), f"found {found} of {len(people)} people: {np.round(fractions, 2)}"
    # Coordinates are frame pixels, within (or at the edge of) the frame.
    xy = poses.keypoints[poses.visible][:, :2]
    h, w = frame.shape[:2]
    assert np.all((xy > -8) & (xy < [w + 8, h + 8]))
    assert set(omz.last_timings) == set(STAGES) and all(v >= 0 for v in omz.last_timings.values())
    t = omz.last_timings
    assert t["total"] >= t["preprocess"] + t["inference"] + t["decode"] - 1e-6


def test_batch_of_different_sizes_equals_each_alone(omz: EdgePose, coco_annotations: Dict[str, Any]) -> None:
    a = _image(coco_annotations, 196141)
    b = cv2.resize(_image(coco_annotations, 217285), (500, 420), interpolation=cv2.INTER_AREA)
    both = omz.infer_batch([a, b])
    assert len(both) == 2
    for frame, got in zip((a, b), both):
        alone = omz.infer(frame)
        assert len(alone) > 0
        assert got.allclose(alone, atol=1e-3), got.diff(alone, atol=1e-3)
    # The same frame twice: one batch of two.
    twice = omz.infer_batch([a, a])
    assert twice[0].allclose(twice[1]), twice[0].diff(twice[1])


def test_run_maps_are_raw_outputs(omz: EdgePose, coco_annotations: Dict[str, Any]) -> None:
    frame = _image(coco_annotations, 196141)
    heat, paf, (t,) = omz.run_maps([frame])
    assert omz.spec.heatmap_layout == "NCHW"
    assert heat.shape == (1, 19, 46, 69) and paf.shape == (1, 38, 46, 69)
    assert t == transform_for(frame.shape[:2], omz.spec) and t.input_size == (368, 552)
    assert set(omz.last_timings) == set(STAGES) and omz.last_timings["decode"] == 0.0
    from edgepose.decode import decode

    poses = decode(heat, paf, heatmap_stride=8, layout="NCHW", config=omz.decoder_config)[0]
    poses = poses.translate(*omz.spec.keypoint_offset).to_image(t)  # the network's measured offset
    again = omz.infer(frame)
    assert poses.allclose(again, atol=1e-4), poses.diff(again, atol=1e-4)


class RenderingBackend(BackendBase):
    """A stand-in network with TAO BodyPoseNet's tensors (heatmap stride 8, PAF stride 2) whose
    outputs are the rendered ground truth of one fixed pose, given in network-input pixels, moved
    right by the value v of the input's centre pixel (a frame filled with v: the pose moves v px).

    Like TensorRT's backend, it returns views of output buffers that every run overwrites.
    ``layouts`` gives the (heatmap, PAF) output layouts."""

    name = "rendering"

    def __init__(self, pose_in_input: np.ndarray, batch: Any = None, layouts: tuple = ("NHWC", "NHWC")) -> None:
        super().__init__()
        self.pose = pose_in_input
        self.layouts = layouts
        self.calls: List[tuple] = []
        self._buffers: Dict[str, np.ndarray] = {}

        def shape(h: int, w: int, c: int, layout: str) -> tuple:
            return (batch, h, w, c) if layout == "NHWC" else (batch, c, h, w)

        self._inputs = [TensorSpec("input_1:0", (batch, 288, 384, 3))]
        self._outputs = [TensorSpec("conv2d_transpose_1/BiasAdd:0", shape(144, 192, 38, layouts[1])),
                         TensorSpec("heatmap_out/BiasAdd:0", shape(36, 48, 19, layouts[0]))]

    version = "1"
    inputs = property(lambda self: list(self._inputs))
    outputs = property(lambda self: list(self._outputs))

    def _out(self, name: str, maps: List[np.ndarray], layout: str) -> np.ndarray:
        """``maps`` (NHWC, one per image) written into the reused buffer ``name``; a view of it."""
        b = len(maps)
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < b:
            shape = maps[0].shape if layout == "NHWC" else (maps[0].shape[2], *maps[0].shape[:2])
            buf = self._buffers[name] = np.empty((max(b, 4), *shape), np.float32)
        for i, m in enumerate(maps):
            buf[i] = m if layout == "NHWC" else m.transpose(2, 0, 1)
        return buf[:b]

    def _run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        x = feed["input_1:0"]
        self.calls.append(x.shape)
        heats, pafs = [], []
        for image in x:
            pose = self.pose.copy()
            pose[..., 0] += np.round((image[144, 192, 0] + 0.5) * 256)  # RGB, x / 256 - 0.5
            heats.append(render_heatmaps(pose, shape=(36, 48), stride=8, sigma=1.0))
            pafs.append(render_pafs(pose, shape=(144, 192), stride=2, width=2.0))
        return {"heatmap_out/BiasAdd:0": self._out("heat", heats, self.layouts[0]),
                "conv2d_transpose_1/BiasAdd:0": self._out("paf", pafs, self.layouts[1])}

    def _close(self) -> None:
        pass


def _standing_person() -> np.ndarray:
    xs = [200, 200, 185, 180, 178, 215, 220, 222, 190, 190, 190, 210, 210, 210, 196, 204, 192, 208]
    ys = [60, 80, 82, 110, 135, 82, 110, 135, 150, 190, 230, 150, 190, 230, 56, 56, 58, 58]
    kp = np.zeros((1, 18, 3), np.float32)
    kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = xs, ys, 1
    kp[0, :, :2] += [3.3, 7.6]  # off the stride grids
    return kp


def test_strides_and_transform_reach_the_decoder() -> None:
    pose = _standing_person()
    backend = RenderingBackend(pose)
    model = EdgePose(backend, config=DecoderConfig.ideal())
    assert model.spec == ModelSpec.bodyposenet()  # detected through a non-ORT backend
    frame = np.zeros((480, 520, 3), np.uint8)
    poses = model.infer(frame)
    t = transform_for(frame.shape[:2], model.spec)
    assert (t.pad_x, t.pad_y) != (0, 0)
    want = t.to_image(pose[0, :, :2])
    assert len(poses) == 1
    err = np.abs(poses.keypoints[0, :, :2] - want).max()
    assert err < 1.0 / t.scale_x, err  # within a pixel of the network input
    model.close()
    assert not backend.closed  # a backend passed in belongs to the caller


def test_fixed_batch_runs_in_chunks() -> None:
    backend = RenderingBackend(_standing_person(), batch=2)
    model = EdgePose(backend, config=DecoderConfig.ideal())
    frames = [np.zeros((288, 384, 3), np.uint8)] * 3
    poses = model.infer_batch(frames)
    assert [len(p) for p in poses] == [1, 1, 1]
    assert backend.calls == [(2, 288, 384, 3), (2, 288, 384, 3)]
    heat, paf, ts = model.run_maps(frames)
    assert heat.shape == (3, 36, 48, 19) and paf.shape == (3, 144, 192, 38) and len(ts) == 3


def _filled(*values: int) -> List[np.ndarray]:
    """Frames of the backend's input size, each filled with one value (the pose moves that many px)."""
    return [np.full((288, 384, 3), v, np.uint8) for v in values]


def test_outputs_in_reused_buffers_are_copied() -> None:
    """A backend returning views of buffers that its next run overwrites (TensorRT does): what a
    call returned stays as it was after the next call, in one run and across chunks."""
    pose = _standing_person()
    model = EdgePose(RenderingBackend(pose), config=DecoderConfig.ideal())
    heat1, paf1, _ = model.run_maps(_filled(0))
    kept = heat1.copy(), paf1.copy()
    heat2, _, _ = model.run_maps(_filled(40))
    assert not np.array_equal(heat2, kept[0])  # frame 2's maps differ ...
    assert np.array_equal(heat1, kept[0]) and np.array_equal(paf1, kept[1])  # ... and frame 1's are intact
    # A fixed batch of 2 runs 3 frames in two calls: the first call's outputs must survive the second.
    model = EdgePose(RenderingBackend(pose, batch=2), config=DecoderConfig.ideal())
    shifts = (0, 10, 20)
    poses = model.infer_batch(_filled(*shifts))
    heat, _, _ = model.run_maps(_filled(*shifts))
    for i, (p, v) in enumerate(zip(poses, shifts)):
        assert len(p) == 1
        np.testing.assert_allclose(p.keypoints[0, :, 0], pose[0, :, 0] + v, atol=0.5, err_msg=f"frame {i}")
        assert np.array_equal(heat[i], render_heatmaps(pose + [v, 0, 0], shape=(36, 48), stride=8, sigma=1.0))


@pytest.mark.parametrize("layouts", [("NHWC", "NCHW"), ("NCHW", "NHWC"), ("NCHW", "NCHW")])
def test_mixed_output_layouts_decode_like_nhwc(layouts: tuple) -> None:
    """Heatmap and PAF in different layouts (a model may have them): the same poses as NHWC."""
    pose = _standing_person()
    frames = _filled(0, 7)
    want = EdgePose(RenderingBackend(pose), config=DecoderConfig.ideal()).infer_batch(frames)
    model = EdgePose(RenderingBackend(pose, layouts=layouts), spec=ModelSpec.bodyposenet().replace(
        output_layout=layouts), config=DecoderConfig.ideal())
    assert (model.spec.heatmap_layout, model.spec.paf_layout) == layouts
    got = model.infer_batch(frames)
    assert [len(p) for p in want] == [1, 1]
    for g, w in zip(got, want):
        assert g.allclose(w, atol=1e-4), g.diff(w, atol=1e-4)


def test_stage_times_add_up_over_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage entered several times in one call (inference, once per chunk) reports the sum. The
    clock is the test's: it moves only inside the backend, 10 ms per run."""
    import edgepose.pipeline as pipeline

    clock = [0.0]

    class Backend(RenderingBackend):
        def _run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
            clock[0] += 0.010
            return super()._run(feed)

    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: clock[0])
    model = EdgePose(Backend(_standing_person(), batch=2), config=DecoderConfig.ideal())
    model.infer_batch(_filled(0, 0, 0, 0, 0))  # 3 runs of 2
    t = model.last_timings
    assert t["inference"] == pytest.approx(30.0) and t["total"] == pytest.approx(30.0)
    assert t["preprocess"] == 0.0 and t["decode"] == 0.0


def test_spec_and_input_size_arguments(tmp_path: Path) -> None:
    path = need(MODELS / "tfpose_mobilenet_v2_small.onnx")
    frame = np.zeros((300, 400, 3), np.uint8)
    with EdgePose(path, input_size=(160, 224), threads=1) as m:
        assert m.spec.input_size == (160, 224) and m.spec.name == "tfpose_mobilenet_v2_small"
        heat, _, _ = m.run_maps([frame])
        assert heat.shape == (1, 20, 28, 19)
    with EdgePose(path, input_size=184, spec={"interpolation": "area"}) as m:
        assert (m.spec.target_height, m.spec.interpolation, m.spec.input_size) == (184, "area", None)
        heat, _, _ = m.run_maps([frame])
        assert heat.shape[1] == 23
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"color": "RGB"}))
    with EdgePose(path, spec=spec_file) as m:
        assert m.spec.color == "RGB" and isinstance(m.decoder_config, DecoderConfig)
    with pytest.raises(SpecError, match="paf_output 'nope'"):
        EdgePose(path, spec=ModelSpec.tfpose().replace(paf_output="nope"))


def test_errors_and_lifetime(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="missing.onnx"):
        EdgePose(tmp_path / "missing.onnx")
    model = EdgePose(need(MODELS / "tfpose_mobilenet_v2_small.onnx"), threads=1)
    with pytest.raises(InputError, match="frame: expected one"):
        model.infer([np.zeros((10, 10, 3), np.uint8)])
    with pytest.raises(InputError, match=r"frames\[1\].*uint8"):
        model.infer_batch([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 3), np.float32)])
    assert len(model.infer(np.zeros((50, 60, 3), np.uint8))) == 0  # still works; nothing in a black frame
    with model:
        pass
    with pytest.raises(RuntimeError, match="after close"):
        model.infer(np.zeros((50, 60, 3), np.uint8))
    model.close()


# -- frames on the GPU: routing, and the clear error where they cannot go -----------------------------

class _CaiFrame:
    """A stand-in for a CuPy / PyTorch CUDA frame: ``__cuda_array_interface__`` only (a pointer that is
    never dereferenced here)."""

    def __init__(self, shape: tuple = (48, 64, 3), typestr: str = "|u1", strides: Any = None) -> None:
        self.shape = shape
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0x7F0000001000, False),
                                         "version": 3, "strides": strides}


class _DLPackFrame:
    """An object that speaks DLPack only, on the device type it is given (2: CUDA, 1: CPU)."""

    def __init__(self, device_type: int) -> None:
        self.shape, self._device_type = (48, 64, 3), device_type

    def __dlpack_device__(self) -> tuple:
        return (self._device_type, 0)

    def __dlpack__(self, stream: Any = None) -> Any:
        raise AssertionError("routing must not export the array")


def test_route_frames_host_or_device() -> None:
    from edgepose.pipeline import route_frames

    host = np.zeros((48, 64, 3), np.uint8)
    assert route_frames(host, "onnxruntime") is False  # numpy has __dlpack_device__ too: CPU
    assert route_frames([host, host], "tensorrt") is False  # host frames stay on the host path, any backend
    assert route_frames(_CaiFrame(), "tensorrt") is True
    assert route_frames([_CaiFrame(), _DLPackFrame(2)], "tensorrt") is True
    assert route_frames([_DLPackFrame(1)], "tensorrt") is False  # a CPU DLPack array is not a device frame
    assert route_frames("frame.jpg", "tensorrt") is False  # not frames at all: as_frames says what is wrong
    with pytest.raises(InputError, match=r"frames\[1\] is on the GPU and frames\[0\] is not"):
        route_frames([host, _CaiFrame()], "tensorrt")
    for frames in (_CaiFrame(), [_DLPackFrame(2)]):
        with pytest.raises(InputError, match=r"needs backend='tensorrt'.*'onnxruntime' backend takes host frames.*"
                                             r"frame\.get\(\).*frame\.cpu\(\)\.numpy\(\)"):
            route_frames(frames, "onnxruntime")


def test_device_frame_with_onnxruntime_is_one_clear_error(omz: EdgePose) -> None:
    assert omz.backend.name == "onnxruntime"
    with pytest.raises(InputError, match=r"GPU \(test_pipeline\._CaiFrame\) needs backend='tensorrt'"):
        omz.infer(_CaiFrame())
    with pytest.raises(InputError, match="needs backend='tensorrt'"):
        omz.infer_batch([_CaiFrame(), _CaiFrame((30, 40, 3))])
    with pytest.raises(InputError, match="needs backend='tensorrt'"):
        omz.run_maps([_DLPackFrame(2)])
    with pytest.raises(InputError, match="frame: expected one"):
        omz.infer(_CaiFrame((2, 48, 64, 3)))  # infer takes one frame, on either side
    assert len(omz.infer(np.zeros((48, 64, 3), np.uint8))) == 0  # the model is unharmed


class _TensorRTStandIn(RenderingBackend):
    """A host-only backend under TensorRT's name: the device path is chosen, so the frames' checks run
    (the GPU work after them cannot run here)."""

    name = "tensorrt"


def test_device_frames_are_checked_before_any_gpu_work() -> None:
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from edgepose.backends import _cuda
    from edgepose.errors import EdgePoseError

    model = EdgePose(_TensorRTStandIn(_standing_person()))
    with pytest.raises(InputError, match=r"frames\[1\]: a GPU frame must be a C-contiguous \(H, W, 3\) uint8 BGR "
                                         r"array, got float32 \(48, 64, 3\)"):
        model.infer_batch([_CaiFrame(), _CaiFrame(typestr="<f4")])
    with pytest.raises(InputError, match=r"frames\[0\]: .*got uint8 \(48, 64, 3\) \(strided\)"):
        model.infer(_CaiFrame(strides=(64 * 4 * 3, 4 * 3, 1)))
    with pytest.raises(InputError, match=r"frames\[0\]: .*got uint8 \(48, 64\)"):
        model.infer_batch([_CaiFrame((48, 64))])
    with pytest.raises(InputError, match=r"frames\[0\]: empty frame"):
        model.infer_batch([_CaiFrame((0, 64, 3))])
    if _cuda.device_count() == 0:
        # Valid frames reach the GPU pre-processor, which fails as an edgepose error (no driver here).
        with pytest.raises(EdgePoseError, match="cudaFree"):
            model.infer(_CaiFrame())
    model.close()
