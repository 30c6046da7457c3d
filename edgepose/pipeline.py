"""EdgePose: a model, its spec, a backend and a decoder, from frames to poses in frame pixels.

    with EdgePose("omz_human_pose_estimation_0001.onnx") as model:
        poses = model.infer(frame)             # Poses in frame pixels
        print(model.last_timings)             # {"preprocess": ms, "inference": ms, "decode": ms, "total": ms}

The path of one batch: ``preprocess`` (resize, normalise, layout) -> ``backend.run`` -> the C++
``Decoder`` (GIL released) -> ``Poses.to_image``; each stage runs under one stage timer.

Thread-safety: an EdgePose is *not* thread-safe. Its decoder owns scratch memory reused across
frames and ``last_timings`` belongs to the last call. Use one EdgePose per thread (the usual choice:
each has its own session and decoder) or guard a shared one with a lock.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .config import DecoderConfig
from .errors import InputError
from .formats.detect import ModelSource, read_head
from .preprocess import FrameInput, Transform, as_frames, preprocess, transform_for
from .results import Poses
from .spec import ModelSpec, spec_for

__all__ = ["EdgePose"]

STAGES = ("preprocess", "inference", "decode", "total")
"""The keys of :attr:`EdgePose.last_timings`."""


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

    Raises:
        ModelFormatError: the model file is missing or not a model (DecryptionError: a wrong ``key``).
        BackendUnavailable: the backend or provider cannot run here.
        SpecError: the model has no heatmap / PAF pair, or the spec does not fit it.
    """

    def __init__(self, model: Union[ModelSource, Any], *, backend: str = "auto",
                 spec: Union[None, ModelSpec, Mapping[str, Any], str, os.PathLike[str]] = None,
                 config: Optional[DecoderConfig] = None, threads: Optional[int] = None,
                 providers: Union[None, str, Sequence[Any]] = None,
                 input_size: Union[None, int, Tuple[int, int]] = None, key: Optional[str] = None) -> None:
        from .backends import Backend, create
        from .decode import Decoder

        if config is not None and not isinstance(config, DecoderConfig):
            raise TypeError(f"config: expected a DecoderConfig, got {type(config).__name__}")
        self._owns_backend = not isinstance(model, Backend)
        if self._owns_backend:
            read_head(model, 1)  # a missing path is a ModelFormatError naming it, before any backend work
            options: Dict[str, Any] = {}
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
            self._config = config if config is not None else DecoderConfig()
            self._decoder = Decoder(self._spec.topology, self._config)
            image = next(t for t in self._backend.inputs if t.name == self._spec.input_name)
            self._input_dtype = image.dtype if image.dtype in ("float32", "float16") else "float32"
            batch = image.shape[0]
            self._fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
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
    def decoder_config(self) -> DecoderConfig:
        """The decoder's thresholds and choices."""
        return self._config

    # -- stages ----------------------------------------------------------------------------------
    def _maps(self, frames: FrameInput, timer: _StageTimer) -> Tuple[np.ndarray, np.ndarray, List[Transform]]:
        spec = self._spec
        with timer.stage("preprocess"):
            tensor, transforms = preprocess(frames, spec, dtype=self._input_dtype)
        with timer.stage("inference"):
            heat, paf = self._run(tensor)
        return heat, paf, transforms

    def _run(self, tensor: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Run the backend, in chunks of the model's batch size when that is fixed."""
        spec, b = self._spec, self._fixed_batch
        if b is None or tensor.shape[0] == b:
            out = self._backend.run({spec.input_name: tensor})
            return out[spec.heatmap_output], out[spec.paf_output]
        heats, pafs = [], []
        n = tensor.shape[0]
        for start in range(0, n, b):
            chunk = tensor[start:start + b]
            if chunk.shape[0] < b:  # fill the last chunk with copies of its first image; outputs dropped
                chunk = np.concatenate([chunk, np.repeat(chunk[:1], b - chunk.shape[0], axis=0)])
            out = self._backend.run({spec.input_name: chunk})
            heats.append(out[spec.heatmap_output])
            pafs.append(out[spec.paf_output])
        return np.concatenate(heats)[:n], np.concatenate(pafs)[:n]

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
            maps, tuning the decoder, or benchmarks.
        """
        self._check_open()
        timer = _StageTimer()
        heat, paf, transforms = self._maps(frames, timer)
        self.last_timings = timer.done()
        return heat, paf, transforms

    def infer_batch(self, frames: FrameInput) -> List[Poses]:
        """The poses of each frame (in its own pixels), for a list of (H, W, 3) uint8 BGR frames of any sizes.

        Frames whose network input has the same size run as one batch. For a dynamic-size model,
        frames of different input sizes run as separate batches rather than padded to a common
        size: padding would change the network's output near the padded edge (its receptive
        field), so a frame's poses would depend on the other frames of the batch. Here they do not.
        """
        self._check_open()
        timer = _StageTimer()
        with timer.stage("preprocess"):
            frames = as_frames(frames)
            groups: Dict[Tuple[int, int], List[int]] = {}
            for i, f in enumerate(frames):
                groups.setdefault(transform_for(f.shape[:2], self._spec).input_size, []).append(i)
        results: List[Optional[Poses]] = [None] * len(frames)
        for indices in groups.values():
            heat, paf, transforms = self._maps([frames[i] for i in indices], timer)
            with timer.stage("decode"):
                poses = self._decode(heat, paf, transforms)
            for i, p in zip(indices, poses):
                results[i] = p
        self.last_timings = timer.done()
        return results  # type: ignore[return-value]

    def infer(self, frame: np.ndarray) -> Poses:
        """The poses in one (H, W, 3) uint8 BGR frame, in frame pixels."""
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
            shape = getattr(frame, "shape", None)
            raise InputError(f"frame: expected one (H, W, 3) uint8 BGR array, got "
                             f"{type(frame).__name__}{'' if shape is None else f' of shape {shape}'}; "
                             "use infer_batch for several frames")
        return self.infer_batch([frame])[0]

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
