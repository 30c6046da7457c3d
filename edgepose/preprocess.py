"""Pre-processing: frames (H, W, 3) uint8 BGR -> the model's input tensor, and the way back.

Each frame is resized with OpenCV (aspect kept or not, see :attr:`ModelSpec.resize`), placed in a
preallocated batch tensor in the model's layout and colour order, normalised ``y = x * scale +
offset`` on the way in, and padded with ``pad_value``. Its :class:`Transform` maps points between
frame pixels and input pixels.

Coordinates follow OpenCV's ``resize`` (``align_corners=False``): pixel *centres* sit at integer
coordinates, and input pixel ``i`` covers frame coordinate ``(i + 0.5 - pad) / scale - 0.5``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .errors import InputError
from .spec import ModelSpec

__all__ = ["Transform", "as_frames", "preprocess", "transform_for", "MAX_INPUT_SIDE"]

MAX_INPUT_SIDE = 8192
"""A computed input side above this is refused (a frame of extreme aspect ratio)."""

_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}


@dataclass(frozen=True)
class Transform:
    """The affine map between one frame's pixels and the network input's pixels.

    Attributes:
        scale_x, scale_y: input pixels per frame pixel (the resized size / the frame size).
        pad_x, pad_y: where the resized frame starts in the input (left / top padding).
        input_size: ``(H, W)`` of this frame's input (content + padding). In a batch of frames of
            different sizes the tensor can be larger; the extra padding is right / bottom.
        frame_size: ``(H, W)`` of the original frame.
    """

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    input_size: Tuple[int, int]
    frame_size: Tuple[int, int]

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Input-pixel coordinates ``(..., 2)`` -> frame-pixel coordinates (float64)."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] + 0.5 - self.pad_x) / self.scale_x - 0.5
        out[..., 1] = (xy[..., 1] + 0.5 - self.pad_y) / self.scale_y - 0.5
        return out

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Frame-pixel coordinates ``(..., 2)`` -> input-pixel coordinates (float64); inverse of
        :meth:`to_image`."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] + 0.5) * self.scale_x + self.pad_x - 0.5
        out[..., 1] = (xy[..., 1] + 0.5) * self.scale_y + self.pad_y - 0.5
        return out

    @property
    def content_size(self) -> Tuple[int, int]:
        """``(H, W)`` of the resized frame inside the input."""
        fh, fw = self.frame_size
        return int(round(fh * self.scale_y)), int(round(fw * self.scale_x))


def transform_for(frame_size: Tuple[int, int], spec: ModelSpec) -> Transform:
    """Where a frame of ``frame_size`` = (H, W) lands in the model's input under ``spec``.

    Fixed ``input_size``: ``stretch`` fills it, ``letterbox`` fits the frame (aspect kept) centred,
    ``height`` fits it top-left. Dynamic size: the frame is scaled to ``target_height`` (aspect kept)
    and the input is that size rounded up to ``size_multiple``; ``letterbox`` centres the frame in
    it, ``height`` puts it top-left, ``stretch`` fills it.
    """
    h, w = int(frame_size[0]), int(frame_size[1])
    if h < 1 or w < 1:
        raise InputError(f"frame size {frame_size}: height and width must be >= 1")
    if spec.input_size is not None:
        in_h, in_w = spec.input_size
        if spec.resize == "stretch":
            rh, rw = in_h, in_w
        else:
            s = min(in_h / h, in_w / w)
            rh, rw = min(in_h, max(1, round(h * s))), min(in_w, max(1, round(w * s)))
    else:
        m = spec.size_multiple
        rh = spec.target_height
        rw = max(1, round(w * rh / h))
        in_h, in_w = math.ceil(rh / m) * m, math.ceil(rw / m) * m
        if in_w > MAX_INPUT_SIDE:
            raise InputError(f"frame of {h}x{w} would need an input {in_h}x{in_w} wide at height {rh}; the limit "
                             f"is {MAX_INPUT_SIDE} (crop the frame or set a fixed input_size)")
        if spec.resize == "stretch":
            rh, rw = in_h, in_w
    if spec.resize == "letterbox":
        pad_y, pad_x = (in_h - rh) // 2, (in_w - rw) // 2
    else:
        pad_y = pad_x = 0
    return Transform(rw / w, rh / h, pad_x, pad_y, (in_h, in_w), (h, w))


FrameInput = Union[np.ndarray, Sequence[np.ndarray]]


def _as_frames(frames: FrameInput) -> List[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim in (2, 3):
            return [frames]
        if frames.ndim == 4:
            return list(frames)
        raise InputError(f"frames: expected a frame (H, W[, C]) or a batch (B, H, W, C), got shape {frames.shape}")
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence):
        raise InputError(f"frames: expected a list of (H, W, 3) uint8 BGR arrays, got {type(frames).__name__}")
    frames = list(frames)
    if not frames:
        raise InputError("frames: the list is empty")
    return frames


def _check_frame(frame: np.ndarray, i: int) -> np.ndarray:
    """A frame as (H, W, 3) BGR or (H, W) grey uint8, or a clear InputError."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frames[{i}]: expected a numpy array (H, W, 3) uint8 BGR, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InputError(f"frames[{i}]: expected uint8 pixels (0..255), got dtype {frame.dtype}; "
                         "convert with np.clip(x, 0, 255).astype(np.uint8)")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)  # drop alpha
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
        raise InputError(f"frames[{i}]: expected shape (H, W, 3) BGR, (H, W, 4) BGRA or (H, W) grey, "
                         f"got {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"frames[{i}]: empty frame of shape {frame.shape}")
    return frame


def as_frames(frames: FrameInput) -> List[np.ndarray]:
    """Validate ``frames`` (as :func:`preprocess` takes them) into a list of (H, W, 3) BGR or (H, W)
    grey uint8 arrays; BGRA loses its alpha.

    Raises:
        InputError: naming the first bad frame and what is wrong with it.
    """
    return [_check_frame(f, i) for i, f in enumerate(_as_frames(frames))]


def preprocess(frames: FrameInput, spec: ModelSpec, *, dtype: Union[str, np.dtype] = np.float32,
               out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, List[Transform]]:
    """Frames -> (input tensor, one Transform per frame).

    Args:
        frames: a list of (H, W, 3) uint8 BGR frames, of any and different sizes; (H, W, 4) BGRA
            and (H, W) / (H, W, 1) grey are accepted too. A single (H, W[, C]) array is one frame;
            a (B, H, W, C) array is B frames.
        spec: the model's :class:`ModelSpec` (size, resize mode, colour, normalisation, layout).
        dtype: the tensor's dtype (the model input's).
        out: a tensor from an earlier call to write into; used when its shape and dtype are the
            ones this call needs (a video's frames: no allocation per frame), otherwise a new
            tensor is allocated and ``out`` is left alone.

    Returns:
        ``tensor`` of shape ``spec.input_shape(B, H, W)``, where (H, W) is the largest input size of
        the frames (for a dynamic model; every frame's own input is at the top-left, the rest is
        padding), and the frames' transforms.

    Raises:
        InputError: a frame that is not uint8, has an unsupported channel count, or is empty.
    """
    frames = as_frames(frames)
    transforms = [transform_for(f.shape[:2], spec) for f in frames]
    in_h = max(t.input_size[0] for t in transforms)
    in_w = max(t.input_size[1] for t in transforms)
    dtype = np.dtype(dtype)
    shape = spec.input_shape(len(frames), in_h, in_w)
    if out is not None and out.shape == shape and out.dtype == dtype and out.flags.c_contiguous:
        tensor = out
    else:
        tensor = np.empty(shape, dtype=dtype)
    scale, offset = dtype.type(spec.scale), dtype.type(spec.offset)
    pad = dtype.type(spec.pad_value * spec.scale + spec.offset)
    nchw = spec.input_layout == "NCHW"
    interpolation = _INTERPOLATION[spec.interpolation]

    for b, (frame, t) in enumerate(zip(frames, transforms)):
        rh, rw = t.content_size
        if (rh, rw) != frame.shape[:2]:
            frame = cv2.resize(frame, (rw, rh), interpolation=interpolation)
        y0, x0 = t.pad_y, t.pad_x
        y1, x1 = y0 + rh, x0 + rw
        item = tensor[b]

        def region(rows: slice, cols: slice, item: np.ndarray = item) -> np.ndarray:
            return item[:, rows, cols] if nchw else item[rows, cols]

        # Padding: only the strips around the content (the batch tensor may be larger than this input).
        for rows, cols in ((slice(0, y0), slice(None)), (slice(y1, None), slice(None)),
                           (slice(y0, y1), slice(0, x0)), (slice(y0, y1), slice(x1, None))):
            strip = region(rows, cols)
            if strip.size:
                strip.fill(pad)
        if frame.ndim == 2:  # grey: the same value in all three channels
            src = frame[None] if nchw else frame[:, :, None]
        else:
            src = frame[:, :, ::-1] if spec.color == "RGB" else frame
            src = src.transpose(2, 0, 1) if nchw else src
        dst = region(slice(y0, y1), slice(x0, x1))
        # Normalise straight into the tensor: uint8 * scale in the tensor's dtype (a SIMD loop that
        # broadcasts grey to three channels), then the offset in place. No intermediate float image.
        np.multiply(src, scale, out=dst)
        if offset:
            dst += offset
    return tensor, transforms
