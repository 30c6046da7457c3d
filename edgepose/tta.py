"""Accuracy mode: the network run at several input scales (and mirrored), maps fused, decoded once.

    EdgePose(model, scales=(1.0, 1.5), flip=True)

Each run ``r`` (a scale, mirrored or not) gives maps on its own grid. Map cell ``j`` at stride ``S``
covers input pixel centre ``(j + 0.5) * S - 0.5`` of that run's input, and the run's
:class:`~edgepose.preprocess.Transform` (resize, letterbox / padding) takes input pixels to frame
pixels. Composing, per axis, "reference cell -> reference input -> frame -> (mirror) -> run input ->
run cell" is one affine map ``u = a * j + b``, so every map is resampled onto the grid of the
largest scale (the *reference*, the finest grid: no map is decimated) exactly at the cell centres,
with bilinear weights (two taps per cell and axis); nothing is corner-aligned. A
mirrored run then gets its left / right heatmap channels swapped, its mirrored limbs swapped and its
PAF x component negated (and both components where the mirrored limb runs the other way), from
:meth:`Topology.flip_permutation`. The maps are averaged and decoded once on the reference grid;
``ModelSpec.keypoint_offset`` (the network's systematic peak offset, in its own input pixels) is
taken out of every run before averaging and put back as the reference's, so the decoder sees the
reference's convention. See docs/accuracy.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, List, Sequence, Tuple, Union

import numpy as np

from .errors import InputError, SpecError
from .preprocess import MAX_INPUT_SIDE, Transform, preprocess
from .spec import ModelSpec

__all__ = ["Fusion", "MAX_SCALE", "MIN_SCALE", "parse_scales", "scaled_spec", "resample_matrix", "cell_map"]

MIN_SCALE = 0.25
MAX_SCALE = 4.0
"""Scales outside [MIN_SCALE, MAX_SCALE] are refused (a quarter or four times the model's input size)."""


def parse_scales(scales: Union[None, str, float, Sequence[Any]], what: str = "scales") -> Tuple[float, ...]:
    """``scales`` (``"1,1.5"``, a number, or a sequence of numbers) as a tuple of floats; None is ``(1.0,)``.

    Raises:
        InputError: empty, not numbers, not finite, outside [0.25, 4], or a scale given twice
            (the message names ``what`` and the value).
    """
    if scales is None:
        return (1.0,)
    if isinstance(scales, str):
        items: List[Any] = [p.strip() for p in scales.split(",")]
    elif isinstance(scales, (int, float)) and not isinstance(scales, bool):
        items = [scales]
    else:
        try:
            items = list(scales)
        except TypeError:
            raise InputError(f"{what}: expected numbers such as 1,1.5, got {scales!r}") from None
    if not items:
        raise InputError(f"{what}: expected at least one scale such as 1,1.5")
    out: List[float] = []
    for item in items:
        try:
            value = float(item) if not isinstance(item, bool) else float("nan")
        except (TypeError, ValueError):
            value = float("nan")
        if not math.isfinite(value) or not MIN_SCALE <= value <= MAX_SCALE:
            raise InputError(f"{what}: each scale must be a number in {MIN_SCALE:g}..{MAX_SCALE:g} (1 = the model's "
                             f"input size), got {item!r} in {scales!r}")
        if value in out:
            raise InputError(f"{what}: scale {value:g} is given twice in {scales!r}")
        out.append(value)
    return tuple(out)


def scaled_spec(spec: ModelSpec, scale: float) -> ModelSpec:
    """``spec`` with its input ``scale`` times as large: ``target_height`` of a dynamic-size spec, or a
    fixed ``input_size`` (rounded to ``size_multiple``)."""
    if scale == 1.0:
        return spec
    m = spec.size_multiple
    if spec.input_size is None:
        h = max(8, int(round(spec.target_height * scale)))
        if h > MAX_INPUT_SIDE:
            raise InputError(f"scales: {scale:g} x target height {spec.target_height} = {h} is over the "
                             f"{MAX_INPUT_SIDE} input limit")
        return spec.replace(target_height=h)
    size = tuple(max(m, int(round(d * scale / m)) * m) for d in spec.input_size)
    if max(size) > MAX_INPUT_SIDE:
        raise InputError(f"scales: {scale:g} x input size {spec.input_size} = {size} is over the "
                         f"{MAX_INPUT_SIDE} input limit")
    return spec.replace(input_size=size)


def cell_map(ref: Transform, ref_stride: float, run: Transform, run_stride: float, *, flipped: bool = False,
             ref_bias: Tuple[float, float] = (0.0, 0.0), run_bias: Tuple[float, float] = (0.0, 0.0)
             ) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """``((ax, bx), (ay, by))``: the run's map cell coordinate ``u = a * j + b`` that holds what the
    reference map shows at cell ``j``, per axis.

    Cell ``j`` at stride ``S`` covers input pixel ``(j + 0.5) * S - 0.5``; ``ref`` / ``run`` take input
    pixels to frame pixels; ``flipped``: the run saw the frame mirrored left-right; ``*_bias``: where
    the network draws a peak relative to the true point, in its input pixels (``-keypoint_offset``).
    """
    out = []
    for axis in (0, 1):
        frame_len = ref.frame_size[1 - axis]

        def run_cell(j: float, axis: int = axis, frame_len: int = frame_len) -> float:
            q = (j + 0.5) * ref_stride - 0.5 - ref_bias[axis]  # the true point the reference cell shows
            pt = np.zeros(2)
            pt[axis] = q
            f = ref.to_image(pt)[axis]
            if flipped and axis == 0:
                f = frame_len - 1 - f
            pt[axis] = f
            x = run.to_input(pt)[axis] + run_bias[axis]  # where the run draws it
            return (x + 0.5) / run_stride - 0.5

        b = run_cell(0.0)
        out.append((run_cell(1.0) - b, b))
    return out[0], out[1]


def resample_matrix(n_out: int, n_src: int, a: float, b: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear sampling of a source axis at ``u = a * j + b`` for each output cell ``j`` (clamped to
    the source's edge cells), as ``(i0, i1, w)``: output ``j`` = ``(1 - w[j]) * src[i0[j]] + w[j] *
    src[i1[j]]``. Two taps per cell: gathers, not a dense matrix product (BLAS threads would compete
    with the inference runtime's)."""
    u = np.clip(a * np.arange(n_out, dtype=np.float64) + b, 0.0, n_src - 1)
    i0 = np.floor(u).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_src - 1)
    return i0, i1, (u - i0).astype(np.float32)


def _hw(layout: str, shape: Tuple[int, ...]) -> Tuple[int, int]:
    return (shape[-3], shape[-2]) if layout == "NHWC" else (shape[-2], shape[-1])


def _lerp(m: np.ndarray, axis: int, taps: Tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    i0, i1, w = taps
    shape = [1] * m.ndim
    shape[axis] = len(w)
    w = w.reshape(shape)
    lo = np.take(m, i0, axis=axis)
    return lo + (np.take(m, i1, axis=axis) - lo) * w


def _resample(m: np.ndarray, layout: str, ry: Tuple[np.ndarray, np.ndarray, np.ndarray],
              rx: Tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """One map (H, W, C) or (C, H, W) resampled with row taps ``ry`` and column taps ``rx``."""
    y_ax, x_ax = (0, 1) if layout == "NHWC" else (1, 2)
    return _lerp(_lerp(m, y_ax, ry), x_ax, rx)


@dataclass(frozen=True)
class _Run:
    spec: ModelSpec
    scale: float
    flipped: bool


class Fusion:
    """The runs of one accuracy-mode setting and how their maps are fused.

    Args:
        spec: the model's spec (scale 1).
        scales: input scales; the largest one's grid (the finest) is the reference, the one decoded.
        flip: also run every scale on the mirrored frame.

    Raises:
        InputError: bad scales. SpecError: ``flip`` with a topology whose flip cannot be undone.
    """

    def __init__(self, spec: ModelSpec, scales: Sequence[float], flip: bool) -> None:
        self.spec = spec
        self.scales = parse_scales(scales)
        self.flip = bool(flip)
        self.specs = [scaled_spec(spec, s) for s in self.scales]
        topo = spec.topology
        if self.flip:
            try:
                perm = topo.flip_permutation()
            except ValueError as e:
                raise SpecError(f"flip: {e}") from None
            self._heat_idx = perm.heatmap_channels(topo.heatmap_channels)
            self._paf_idx, self._paf_sign = perm.paf_channels(topo.paf_channels)
        dx, dy = spec.keypoint_offset
        self._bias = (-dx, -dy)  # the network draws a peak at true point + bias (its input pixels)

    @property
    def runs_per_frame(self) -> int:
        """Network runs per frame: scales x (2 with flip)."""
        return len(self.scales) * (2 if self.flip else 1)

    def unflip_channels(self, heat: np.ndarray, paf: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Batches of a mirrored run's maps with left / right channels and limbs swapped back and the
        PAF x component negated (the spatial mirror is undone by :meth:`align`)."""
        spec = self.spec
        hc = -1 if spec.heatmap_layout == "NHWC" else 1  # batches (B, H, W, C) or (B, C, H, W)
        pc = -1 if spec.paf_layout == "NHWC" else 1
        heat = np.take(heat, self._heat_idx, axis=hc)
        sign = self._paf_sign if pc == -1 else self._paf_sign[:, None, None]
        paf = np.take(paf, self._paf_idx, axis=pc) * sign
        return heat, paf

    def align(self, m: np.ndarray, ref: Transform, run: Transform, out_hw: Tuple[int, int], flipped: bool,
              which: str) -> np.ndarray:
        """One map of one run (a heatmap or PAF, (H, W, C) or (C, H, W) in the model's layout; a
        mirrored run's channels already swapped with :meth:`unflip_channels`) resampled onto the
        reference grid of ``out_hw`` cells, cell centre on cell centre."""
        spec = self.spec
        layout = spec.heatmap_layout if which == "heatmap" else spec.paf_layout
        stride = float(spec.heatmap_stride if which == "heatmap" else spec.paf_stride)
        (ax, bx), (ay, by) = cell_map(ref, stride, run, stride, flipped=flipped, ref_bias=self._bias,
                                      run_bias=self._bias)
        sy, sx = _hw(layout, m.shape)
        return _resample(m, layout, resample_matrix(out_hw[0], sy, ay, by), resample_matrix(out_hw[1], sx, ax, bx))

    def maps(self, frames: List[np.ndarray], run: Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]],
             timer: Any, dtype: Any) -> Tuple[np.ndarray, np.ndarray, List[Transform]]:
        """Fused ``(heatmap, paf, transforms)`` of ``frames`` (checked host frames of one reference input
        size), as :meth:`EdgePose._maps` returns them: the reference grid, the model's layouts, the
        reference transforms. ``run(tensor)`` runs the network on an input batch."""
        spec, n = self.spec, len(frames)
        acc_heat = acc_paf = None
        ref_t: List[Transform] = []
        # The largest scale first: its grid, the finest, is the reference (measured: decoding the coarse
        # grid of (1, 1.5) loses 0.017 AP on coco_mini with the OMZ model, against the finest).
        order = sorted(range(len(self.scales)), key=lambda i: -self.scales[i])
        for k, spec_k in enumerate(self.specs[i] for i in order):
            with timer.stage("preprocess"):
                batch = frames + ([np.ascontiguousarray(f[:, ::-1]) for f in frames] if self.flip else [])
                tensor, transforms = preprocess(batch, spec_k, dtype=dtype)
            heat, paf = run(tensor)
            with timer.stage("decode"):
                heat = np.asarray(heat, dtype=np.float32)
                paf = np.asarray(paf, dtype=np.float32)
                if k == 0:  # the reference grid: the largest scale, not mirrored, as it came
                    ref_t = transforms[:n]
                    acc_heat = heat[:n].copy()
                    acc_paf = paf[:n].copy()
                    hh, hw = _hw(spec.heatmap_layout, heat.shape)
                    ph, pw = _hw(spec.paf_layout, paf.shape)
                    start = n
                else:
                    start = 0
                if self.flip and len(batch) > n:
                    fh, fp = self.unflip_channels(heat[n:], paf[n:])
                    heat = np.concatenate([heat[:n], fh])
                    paf = np.concatenate([paf[:n], fp])
                for i in range(start, len(batch)):
                    b = i % n
                    acc_heat[b] += self.align(heat[i], ref_t[b], transforms[i], (hh, hw), i >= n, "heatmap")
                    acc_paf[b] += self.align(paf[i], ref_t[b], transforms[i], (ph, pw), i >= n, "paf")
        assert acc_heat is not None and acc_paf is not None
        w = np.float32(1.0 / self.runs_per_frame)
        acc_heat *= w
        acc_paf *= w
        return acc_heat, acc_paf, ref_t


def check_model_scales(scales: Tuple[float, ...], image_shape: Sequence[Any], layout: str) -> None:
    """A model whose input height / width is fixed runs only at scale 1.

    Raises:
        SpecError: a scale other than 1 for such a model.
    """
    h_ax, w_ax = (1, 2) if layout == "NHWC" else (2, 3)
    fixed = [image_shape[a] for a in (h_ax, w_ax) if isinstance(image_shape[a], int) and image_shape[a] > 0]
    if fixed and any(s != 1.0 for s in scales):
        raise SpecError(f"scales {','.join(f'{s:g}' for s in scales)}: the model's input size is fixed "
                        f"({list(image_shape)}); scales other than 1 need a model of dynamic height and width "
                        "(or flip alone)")
