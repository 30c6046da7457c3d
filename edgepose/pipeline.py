"""EdgePose: a model, its spec, a backend and a decoder, from frames to poses in frame pixels.

    with EdgePose("omz_human_pose_estimation_0001.onnx") as model:
        poses = model.infer(frame)             # Poses in frame pixels
        print(model.last_timings)             # {"preprocess": ms, "inference": ms, "decode": ms, "total": ms}

The path of one batch: ``preprocess`` (resize, normalise, layout) -> ``backend.run`` -> the C++
``Decoder`` (GIL released) -> ``Poses.to_image``; each stage runs under one stage timer.

Frames already on the GPU (CuPy, PyTorch CUDA tensors, anything with ``__cuda_array_interface__`` or
a CUDA DLPack device) take the device path with the TensorRT backend: the NVRTC kernel of
:class:`~edgepose.gpu_preprocess.GpuPreprocessor` letterboxes and normalises them on the device, the
backend binds its output as the engine's input, and only the network's outputs come to the host, for
the decoder. :func:`route_frames` makes that choice; any other backend refuses device frames with
one :class:`~edgepose.errors.InputError` that says what to do.

Thread-safety: an EdgePose is *not* thread-safe. Its decoder owns scratch memory reused across
frames and ``last_timings`` belongs to the last call. Use one EdgePose per thread (the usual choice:
each has its own session and decoder) or guard a shared one with a lock.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .config import DecoderConfig
from .errors import InputError, ModelOutputError, SpecError
from .formats.detect import ModelSource, read_head
from .preprocess import FrameInput, Transform, as_frames, preprocess, transform_for
from .results import Poses
from .spec import ModelSpec, spec_for, verify_model_sha256

__all__ = ["EdgePose"]

STAGES = ("preprocess", "inference", "decode", "total")
"""The keys of :attr:`EdgePose.last_timings`."""

DEVICE_BACKENDS = ("tensorrt",)
"""Backends whose ``run`` binds a device array as the input (see :mod:`edgepose.backends.tensorrt`)."""

_DL_CUDA_DEVICES = (2, 13)  # DLPack kDLCUDA, kDLCUDAManaged (as edgepose.backends._cuda reads them)


MIN_MAP_CELLS = 4
"""A network input must give maps of at least this many cells a side (4 x 4 at stride 8: 32 x 32
pixels); a smaller one (e.g. ``--input-size 7x7``) runs and can only find nobody."""


def _check_map_size(spec: ModelSpec) -> None:
    """SpecError naming ``input_size`` when the spec's input gives maps too small to decode."""
    stride = max(spec.heatmap_stride, spec.paf_stride or spec.heatmap_stride)
    need = MIN_MAP_CELLS * stride
    if spec.input_size is not None:
        what, sides = f"{spec.input_size[0]}x{spec.input_size[1]}", spec.input_size
    else:
        what, sides = f"height {spec.target_height}", (spec.target_height,)
    if min(sides) < need:
        raise SpecError(f"ModelSpec {spec.name!r}: input_size {what} gives maps smaller than {MIN_MAP_CELLS} x "
                        f"{MIN_MAP_CELLS} cells at stride {stride:g}; the decoder needs at least {MIN_MAP_CELLS} cells "
                        f"a side, an input of at least {need:g} pixels a side")


def _is_device_array(obj: Any) -> bool:
    """Whether ``obj`` is an array in CUDA device memory; needs no CUDA library (the ONNX Runtime
    path must recognise a device frame to refuse it, where cuda-python may be absent)."""
    if isinstance(obj, np.ndarray):
        return False
    if hasattr(obj, "__cuda_array_interface__"):  # a PyTorch CPU tensor raises here: hasattr is False
        return True
    dlpack_device = getattr(obj, "__dlpack_device__", None)
    if dlpack_device is None:
        return False
    try:
        return int(dlpack_device()[0]) in _DL_CUDA_DEVICES
    except Exception:  # not a usable DLPack object: the host path reports what is wrong with it
        return False


def route_frames(frames: Any, backend_name: str) -> bool:
    """Whether ``frames`` (as :meth:`EdgePose.infer_batch` takes them) go the device path.

    Returns:
        False for host frames (numpy and anything else :func:`~edgepose.preprocess.as_frames`
        judges), True for device frames with a backend in :data:`DEVICE_BACKENDS`.

    Raises:
        InputError: device frames with a backend that takes host arrays only (it says how to
            download them or which backend to use), or a batch mixing device and host frames.
    """
    if _is_device_array(frames):
        items = [frames]
    elif isinstance(frames, (list, tuple)):
        items = list(frames)
    else:
        return False
    on_device = [i for i, f in enumerate(items) if _is_device_array(f)]
    if not on_device:
        return False
    if len(on_device) != len(items):
        host = next(i for i in range(len(items)) if i not in on_device)
        raise InputError(f"frames: frames[{on_device[0]}] is on the GPU and frames[{host}] is not; pass all frames "
                         "of one call on the same side")
    if backend_name not in DEVICE_BACKENDS:
        f = items[on_device[0]]
        kind = f"{type(f).__module__.split('.')[0]}.{type(f).__name__}"
        raise InputError(
            f"frames: a frame on the GPU ({kind}) needs backend='tensorrt', which pre-processes it on the device; "
            f"the {backend_name!r} backend takes host frames. Download it first (CuPy: frame.get(), PyTorch: "
            "frame.cpu().numpy()), or load the model with EdgePose(..., backend='tensorrt') (TensorRT 10, "
            "cuda-python and an NVIDIA GPU)")
    return True


def _device_frames(frames: Any) -> Tuple[List[Any], List[Tuple[int, int]]]:
    """Device frames as a list, checked, with their (H, W): each a C-contiguous (H, W, 3) uint8 BGR array
    (a (B, H, W, 3) array is B frames). Needs cuda-python (only the TensorRT backend gets here)."""
    from .backends._cuda import device_array

    if _is_device_array(frames):
        da = device_array(frames)
        frames = list(frames) if da is not None and len(da.shape) == 4 else [frames]
    frames = list(frames)
    sizes = []
    for i, f in enumerate(frames):
        da = device_array(f)
        if da is None or da.dtype != np.uint8 or len(da.shape) != 3 or da.shape[2] != 3 or not da.contiguous:
            what = "not a device array" if da is None else \
                f"{da.dtype} {da.shape}{'' if da.contiguous else ' (strided)'}"
            raise InputError(f"frames[{i}]: a GPU frame must be a C-contiguous (H, W, 3) uint8 BGR array, got {what} "
                             "(convert it on the device, e.g. cupy.ascontiguousarray / tensor.contiguous())")
        if da.shape[0] < 1 or da.shape[1] < 1:
            raise InputError(f"frames[{i}]: empty frame of shape {da.shape}")
        sizes.append((int(da.shape[0]), int(da.shape[1])))
    return frames, sizes


def _raise_if_not_finite(heat: np.ndarray, paf: np.ndarray, indices: List[int], spec: ModelSpec) -> None:
    """Raise :class:`ModelOutputError` naming the first frame whose maps hold NaN or inf (the decoder
    refuses them with a plain ValueError); return when every map is finite."""
    for row, index in enumerate(indices):
        for what, maps, name in (("heatmap", heat, spec.heatmap_output), ("PAF", paf, spec.paf_output)):
            if not np.isfinite(maps[row]).all():
                reason = (f"the model's {what} output {name!r} holds NaN or inf values, which cannot be decoded "
                          "(a damaged weight, or an FP16 overflow: try the FP32 model or engine)")
                error = ModelOutputError(f"frames[{index}]: {reason}")
                error.frame, error.reason = index, reason
                raise error


def _slicer(tensor: np.ndarray) -> Callable[[int, int, int], np.ndarray]:
    """``batch(start, stop, fill)`` of :meth:`EdgePose._run` over a host input tensor."""
    def batch(start: int, stop: int, fill: int) -> np.ndarray:
        chunk = tensor[start:stop]
        return np.concatenate([chunk, np.repeat(chunk[:1], fill, axis=0)]) if fill else chunk

    return batch


class _StageTimer:
    """Wall-clock milliseconds per stage of one call; the only place edgepose times its stages."""

    def __init__(self) -> None:
        self.ms: Dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] += (time.perf_counter() - t0) * 1e3

    def done(self) -> Dict[str, float]:
        self.ms["total"] = (time.perf_counter() - self._start) * 1e3
        return dict(self.ms)


class EdgePose:
    """Multi-person pose estimation with one model.

    Args:
        model: path to the model file (ONNX today) or its bytes, or an open Backend (not closed by
            this object).
        backend: ``"auto"`` (TensorRT when it could run, else ONNX Runtime) or a backend name.
        spec: None (detected, see :func:`edgepose.spec.spec_for`), a complete :class:`ModelSpec`,
            or a dict / JSON path of ModelSpec fields that override the detected ones.
        config: the decoder's :class:`DecoderConfig` (default ``DecoderConfig()``).
        threads: intra-op threads of the backend (None: its default).
        providers: ONNX Runtime execution providers (``"cpu"`` default, ``"cuda"``, ``"tensorrt"``).
        input_size: ``(H, W)`` to run a dynamic-size model at a fixed size, or an int: the target
            height of a dynamic model (aspect kept).
        key: the key of a TAO ``.etlt`` model (default ``$EDGEPOSE_KEY``, ``$TAO_KEY`` or
            ``nvidia_tlt``); the file is decrypted in memory. Ignored for other formats.
        scales: accuracy mode: run the network at these input scales (e.g. ``(1.0, 1.5)``, or
            ``"1,1.5"``), fuse the maps on the largest scale's grid and decode once (:mod:`edgepose.tta`,
            docs/accuracy.md). Default: ``(1.0,)``, one run.
        flip: accuracy mode: also run each scale on the mirrored frame and fuse it back.
        backend_options: further options for the backend's constructor (e.g. OpenVINO's
            ``{"precision": "f32"}``).

    Raises:
        ModelFormatError: the model file is missing or not a model (DecryptionError: a wrong ``key``).
        BackendUnavailable: the backend or provider cannot run here.
        SpecError: the model has no heatmap / PAF pair, or the spec does not fit it (or scales other
            than 1 on a model of fixed input size).
        InputError: bad ``scales``.
    """

    def __init__(self, model: Union[ModelSource, Any], *, backend: str = "auto",
                 spec: Union[None, ModelSpec, Mapping[str, Any], str, os.PathLike[str]] = None,
                 config: Optional[DecoderConfig] = None, threads: Optional[int] = None,
                 providers: Union[None, str, Sequence[Any]] = None,
                 input_size: Union[None, int, Tuple[int, int]] = None, key: Optional[str] = None,
                 scales: Union[None, str, Sequence[float]] = None, flip: bool = False,
                 backend_options: Optional[Mapping[str, Any]] = None) -> None:
        from . import tta
        from .backends import Backend, create
        from .decode import Decoder

        if config is not None and not isinstance(config, DecoderConfig):
            raise TypeError(f"config: expected a DecoderConfig, got {type(config).__name__}")
        self._owns_backend = not isinstance(model, Backend)
        self._gpu_pre: Any = None  # GpuPreprocessor, made on the first frame on the GPU
        self._input_buffer: Optional[np.ndarray] = None  # the last input tensor, rewritten in place
        if self._owns_backend:
            read_head(model, 1)  # a missing path is a ModelFormatError naming it, before any backend work
            verify_model_sha256(model)  # a digest recorded in model.edgepose.json, before the model loads
            options: Dict[str, Any] = dict(backend_options or {})
            if threads is not None:
                options["threads"] = threads
            if providers is not None:
                options["providers"] = providers
            if key is not None:
                options["key"] = key
            self._backend = create(model, backend, **options)
        else:
            self._backend = model
        try:
            overrides: Dict[str, Any] = {}
            if isinstance(input_size, int) and not isinstance(input_size, bool):
                overrides.update(target_height=input_size, input_size=None)
            elif input_size is not None:
                overrides["input_size"] = tuple(input_size)
            source = model if self._owns_backend else b""
            self._spec = spec_for(source, self._backend, spec=spec, **overrides)
            _check_map_size(self._spec)
            self._config = config if config is not None else DecoderConfig()
            self._decoder = Decoder(self._spec.topology, self._config)
            image = next(t for t in self._backend.inputs if t.name == self._spec.input_name)
            self._input_dtype = image.dtype if image.dtype in ("float32", "float16") else "float32"
            batch = image.shape[0]
            self._fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
            scales = tta.parse_scales(scales)
            tta.check_model_scales(scales, image.shape, self._spec.input_layout)
            self._fusion = tta.Fusion(self._spec, scales, flip) if scales != (1.0,) or flip else None
        except BaseException:
            self.close()
            raise
        self.last_timings: Dict[str, float] = dict.fromkeys(STAGES, 0.0)
        """Milliseconds per stage of the last ``infer`` / ``infer_batch`` / ``run_maps`` call."""

    # -- properties ------------------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        """The model's :class:`ModelSpec`."""
        return self._spec

    @property
    def backend(self) -> Any:
        """The :class:`~edgepose.backends.base.Backend` running the model."""
        return self._backend

    @property
    def scales(self) -> Tuple[float, ...]:
        """The input scales of each frame's runs (``(1.0,)`` outside accuracy mode)."""
        return self._fusion.scales if self._fusion is not None else (1.0,)

    @property
    def flip(self) -> bool:
        """Whether each scale also runs on the mirrored frame (accuracy mode)."""
        return self._fusion is not None and self._fusion.flip

    @property
    def decoder_config(self) -> DecoderConfig:
        """The decoder's thresholds and choices."""
        return self._config

    # -- stages ----------------------------------------------------------------------------------
    def _frames(self, frames: FrameInput) -> Tuple[List[Any], List[Tuple[int, int]], bool]:
        """Checked frames, their (H, W), and whether they are on the device (see :func:`route_frames`)."""
        if route_frames(frames, self._backend.name):
            return (*_device_frames(frames), True)
        frames = as_frames(frames)
        return frames, [f.shape[:2] for f in frames], False

    def _maps(self, frames: List[Any], sizes: List[Tuple[int, int]], on_device: bool, timer: _StageTimer
              ) -> Tuple[np.ndarray, np.ndarray, List[Transform]]:
        """Checked frames and their sizes (from :meth:`_frames`) -> network outputs, one Transform per frame."""
        spec = self._spec
        if self._fusion is not None:
            if on_device:
                raise InputError("frames: accuracy mode (scales / flip) takes host frames; download them first "
                                 "(CuPy: frame.get(), PyTorch: frame.cpu().numpy())")
            return self._fusion.maps(frames, lambda t: self._run(len(t), _slicer(t), timer), timer,
                                     self._input_dtype)
        if on_device:
            # The kernel runs asynchronously on the legacy default stream, which the backend's
            # stream waits for: the pre-processing time shows up in "inference", not "preprocess".
            pre = self._gpu_preprocessor()
            transforms = [transform_for(size, spec) for size in sizes]  # as the kernel places them

            def batch(start: int, stop: int, fill: int) -> Any:
                return pre(frames[start:stop] + [frames[start]] * fill)[0]
        else:
            with timer.stage("preprocess"):
                tensor, transforms = preprocess(frames, spec, dtype=self._input_dtype, out=self._input_buffer)
                self._input_buffer = tensor  # reused by the next call of the same size
            batch = _slicer(tensor)
        heat, paf = self._run(len(frames), batch, timer)
        return heat, paf, transforms

    def _gpu_preprocessor(self) -> Any:
        """The :class:`~edgepose.gpu_preprocess.GpuPreprocessor` of this model (compiled on first use)."""
        if self._gpu_pre is None:
            from .gpu_preprocess import GpuPreprocessor

            self._gpu_pre = GpuPreprocessor(self._spec, self._input_dtype)
        return self._gpu_pre

    def _run(self, n: int, batch: Callable[[int, int, int], Any], timer: _StageTimer
             ) -> Tuple[np.ndarray, np.ndarray]:
        """Run the backend on ``n`` frames, in chunks of the model's batch size when that is fixed.

        ``batch(start, stop, fill)`` makes the input tensor of frames ``start:stop`` followed by
        ``fill`` copies of frame ``start`` (filling the last chunk; those outputs are dropped).
        """
        spec, b = self._spec, self._fixed_batch
        if b is None or n == b:
            with timer.stage("preprocess"):
                x = batch(0, n, 0)
            with timer.stage("inference"):
                out = self._backend.run({spec.input_name: x})
            return out[spec.heatmap_output], out[spec.paf_output]
        heats, pafs = [], []
        for start in range(0, n, b):
            stop = min(start + b, n)
            with timer.stage("preprocess"):
                x = batch(start, stop, b - (stop - start))
            with timer.stage("inference"):
                out = self._backend.run({spec.input_name: x})
                # Copies: a backend may return views of buffers its next run overwrites (TensorRT).
                heats.append(np.array(out[spec.heatmap_output][:stop - start]))
                pafs.append(np.array(out[spec.paf_output][:stop - start]))
        return np.concatenate(heats), np.concatenate(pafs)

    def _decode(self, heat: np.ndarray, paf: np.ndarray, transforms: List[Transform]) -> List[Poses]:
        spec = self._spec
        if spec.paf_layout != spec.heatmap_layout:
            # The decoder takes one layout for both maps; bring the PAF to the heatmap's.
            paf = np.ascontiguousarray(paf.transpose(0, 3, 1, 2) if spec.paf_layout == "NHWC" else
                                       paf.transpose(0, 2, 3, 1))
        poses = self._decoder.decode(heat, paf, heatmap_stride=spec.heatmap_stride, paf_stride=spec.paf_stride,
                                     layout=spec.heatmap_layout)
        if isinstance(poses, Poses):  # defensive: a decoder that returns one Poses for a batch of one
            poses = [poses]
        dx, dy = spec.keypoint_offset
        if dx or dy:  # the network's measured peak offset (ModelSpec.keypoint_offset)
            poses = [p.translate(dx, dy) for p in poses]
        return [p.to_image(t) for p, t in zip(poses, transforms)]

    # -- public ----------------------------------------------------------------------------------
    def run_maps(self, frames: FrameInput) -> Tuple[np.ndarray, np.ndarray, List[Transform]]:
        """Pre-process and run the network, without decoding.

        Returns:
            ``(heatmap, paf, transforms)``: the raw outputs in the model's layout (``spec.heatmap_layout``
            / ``spec.paf_layout``), batch first, and one :class:`Transform` per frame; for caching
            maps, tuning the decoder, or benchmarks. The arrays are the caller's to keep (a backend
            that returns views of its own buffers, as TensorRT's does, is copied here).
            In accuracy mode (``scales`` / ``flip``) they are the fused maps on the largest scale's grid.
        """
        self._check_open()
        timer = _StageTimer()
        with timer.stage("preprocess"):
            frames, sizes, on_device = self._frames(frames)
        heat, paf, transforms = self._maps(frames, sizes, on_device, timer)
        self.last_timings = timer.done()
        if not heat.flags.owndata or not paf.flags.owndata:
            heat, paf = heat.copy(), paf.copy()
        return heat, paf, transforms

    def infer_batch(self, frames: FrameInput) -> List[Poses]:
        """The poses of each frame (in its own pixels), for a list of (H, W, 3) uint8 BGR frames of any sizes.

        Frames whose network input has the same size run as one batch. For a dynamic-size model,
        frames of different input sizes run as separate batches rather than padded to a common
        size: padding would change the network's output near the padded edge (its receptive
        field), so a frame's poses would depend on the other frames of the batch. Here they do not.

        Frames may be on the GPU (CuPy arrays, PyTorch CUDA tensors, anything with
        ``__cuda_array_interface__`` or CUDA DLPack; C-contiguous (H, W, 3) uint8 BGR) when the
        backend is TensorRT: they are pre-processed on the device and bound to the engine without a
        host copy. Other backends raise :class:`~edgepose.errors.InputError` for them.
        """
        self._check_open()
        timer = _StageTimer()
        with timer.stage("preprocess"):
            frames, sizes, on_device = self._frames(frames)
            groups: Dict[Tuple[int, int], List[int]] = {}
            for i, size in enumerate(sizes):
                groups.setdefault(transform_for(size, self._spec).input_size, []).append(i)
        results: List[Optional[Poses]] = [None] * len(frames)
        for indices in groups.values():
            heat, paf, transforms = self._maps([frames[i] for i in indices], [sizes[i] for i in indices], on_device,
                                               timer)
            with timer.stage("decode"):
                try:
                    poses = self._decode(heat, paf, transforms)
                except ValueError:
                    _raise_if_not_finite(heat, paf, indices, self._spec)
                    raise
            for i, p in zip(indices, poses):
                results[i] = p
        self.last_timings = timer.done()
        return results  # type: ignore[return-value]

    def infer(self, frame: Any) -> Poses:
        """The poses in one (H, W, 3) uint8 BGR frame, in frame pixels (a numpy array, or a device array
        with the TensorRT backend: see :meth:`infer_batch`)."""
        host = isinstance(frame, np.ndarray) and frame.ndim in (2, 3)
        if not host and not (_is_device_array(frame) and len(getattr(frame, "shape", (0, 0, 0))) == 3):
            shape = getattr(frame, "shape", None)
            raise InputError(f"frame: expected one (H, W, 3) uint8 BGR array, got "
                             f"{type(frame).__name__}{'' if shape is None else f' of shape {tuple(shape)}'}; "
                             "use infer_batch for several frames")
        return self.infer_batch([frame])[0]

    def track(self, frames: Iterable[Any], timestamps: Optional[Iterable[float]] = None,
              **tracker_kwargs: Any) -> Iterator[Poses]:
        """Tracked poses of consecutive video frames: :meth:`infer` on each frame, then
        :meth:`edgepose.tracking.PoseTracker.update`; yields one Poses with ``ids`` per frame, lazily.

        Args:
            frames: an iterable of (H, W, 3) uint8 BGR frames in time order (a list, a generator
                reading a video, ...).
            timestamps: the frames' times in seconds, increasing (e.g. ``CAP_PROP_POS_MSEC / 1000``);
                None: frame k is at ``k / fps`` (``fps`` a tracker argument, default 30).
            tracker_kwargs: :class:`~edgepose.tracking.PoseTracker` arguments (``smooth=True``,
                ``max_lost=...``), or ``tracker=`` an existing PoseTracker to continue with.
        Raises:
            InputError: a bad frame (as :meth:`infer`), a timestamp that does not increase, or
                fewer timestamps than frames.
        """
        from .tracking import PoseTracker

        tracker = tracker_kwargs.pop("tracker", None)
        if tracker is None:
            tracker = PoseTracker(**tracker_kwargs)
        elif tracker_kwargs:
            raise TypeError(f"track: pass tracker= or PoseTracker arguments, not both ({', '.join(tracker_kwargs)})")
        times = None if timestamps is None else iter(timestamps)
        for k, frame in enumerate(frames):
            t = None
            if times is not None:
                t = next(times, None)
                if t is None:
                    raise InputError(f"timestamps: ran out at frame {k}; give one timestamp per frame")
            yield tracker.update(self.infer(frame), timestamp=t)

    def warmup(self, runs: int = 1) -> None:
        """Run the model on a blank frame ``runs`` times (first-run allocations, lazy initialisation)."""
        h, w = self._spec.input_size or (self._spec.target_height, self._spec.target_height * 4 // 3)
        blank = np.zeros((h, w, 3), np.uint8)
        for _ in range(runs):
            self.infer(blank)

    # -- lifetime --------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise RuntimeError("EdgePose: used after close()")

    def close(self) -> None:
        """Release the backend (when this object opened it). Idempotent."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        if getattr(self, "_gpu_pre", None) is not None:
            self._gpu_pre.close()  # before the backend: both live in the CUDA context it set up
            self._gpu_pre = None
        backend = getattr(self, "_backend", None)
        if backend is not None and self._owns_backend:
            backend.close()

    def __enter__(self) -> EdgePose:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if getattr(self, "_closed", False) else ""
        return f"<EdgePose {self._spec.name!r} on {self._backend.name}{state}>"
