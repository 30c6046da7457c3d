"""The plain numpy reference: decoder and ground-truth renderer, written to be read.

This module implements ``docs/decoder.md`` literally, step by step, in float64. It is the oracle
the C++ decoder (``edgepose._decoder``) is cross-checked against in tests and benchmarks, so it
favours obvious code over fast code: loops follow the spec's loops, and every step names the
spec section it implements. Do not optimise it; make it clearer.

Glossary (as in the spec): B batch, N keypoints, C = N + 1 heatmap channels, K limbs, 2K PAF
channels, M persons, P peaks of one keypoint type, H x W a map's size, s a stride.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .config import DecoderConfig
from .errors import InputError
from .results import Poses
from .topology import BODYPOSENET, Topology

__all__ = [
    "decode_reference",
    "render_heatmaps_reference",
    "render_pafs_reference",
    "find_peaks_reference",
    "assignment_max",
    "GAUSSIAN_CUTOFF",
]

LAYOUTS = ("NHWC", "NCHW")

# Rendering: a Gaussian is cut to 0 where its exponent exceeds ln(100), i.e. where it falls below
# 0.01 (beyond ~3.03 sigma), as OpenPose does; the C++ renderer uses the same constant.
GAUSSIAN_CUTOFF = math.log(100.0)

MAX_LIMB_PEAKS = 128
"""Rule 2: only the first this many peaks of each end of a limb (the strongest) form candidates."""


@dataclass(frozen=True)
class Peak:
    """One heatmap peak (spec section 1): position in input pixels and the cell's value."""

    x: float
    y: float
    score: float


@dataclass(frozen=True)
class Connection:
    """An accepted limb (spec section 3): peak ids of both ends, limb score, match key."""

    a: int
    b: int
    score: float
    key: float


@dataclass
class _Person:
    """A person being assembled (spec section 4): N peak ids (-1 = absent), total, parts."""

    slots: List[int]
    total: float = 0.0
    parts: int = 0


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _as_hwc_batch(name: str, arr: np.ndarray, layout: str, channels: int) -> np.ndarray:
    """``arr`` (3-D one image or 4-D batch, in ``layout``) as float64 (B, H, W, C)."""
    if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr)
    if arr.ndim not in (3, 4):
        raise InputError(f"{name}: expected a 3-D (one image) or 4-D (batch) array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    batch = arr if arr.ndim == 4 else arr[None]
    if layout == "NCHW":
        batch = batch.transpose(0, 2, 3, 1)
    if batch.shape[3] != channels:
        raise InputError(
            f"{name}: expected {channels} channels in layout {layout}, got shape {arr.shape}"
        )
    if batch.shape[1] < 1 or batch.shape[2] < 1:
        raise InputError(f"{name}: the map is empty, shape {arr.shape}")
    out = np.asarray(batch, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise InputError(f"{name}: holds NaN or infinite values")
    return out


def _check_stride(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{name}: must be a finite number > 0, got {value!r}")
    return v


# --------------------------------------------------------------------------------------------
# Section 0: coordinates
# --------------------------------------------------------------------------------------------


def map_to_pixel(u: float, s: float) -> float:
    """Map coordinate -> input pixel: ``x = (u + 0.5) * s - 0.5``."""
    return (u + 0.5) * s - 0.5


def pixel_to_map(x: float, s: float) -> float:
    """Input pixel -> map coordinate: ``u = (x + 0.5) / s - 0.5``."""
    return (x + 0.5) / s - 0.5


# --------------------------------------------------------------------------------------------
# Section 1: peaks
# --------------------------------------------------------------------------------------------


def _nms_mask(h: np.ndarray, threshold: float, r: int) -> np.ndarray:
    """(H, W) bool: cells that are peaks by rule 1.1.

    A cell beats the window cells before it in raster order strictly (``>``) and those after it
    or equal (``>=``), so a plateau yields its first cell only. Out-of-bounds cells do not take
    part (padding with -inf makes every comparison with them true).
    """
    hh, ww = h.shape
    padded = np.full((hh + 2 * r, ww + 2 * r), -np.inf)
    padded[r : r + hh, r : r + ww] = h
    mask = h > threshold
    for di in range(-r, r + 1):
        for dj in range(-r, r + 1):
            if di == 0 and dj == 0:
                continue
            neighbour = padded[r + di : r + di + hh, r + dj : r + dj + ww]
            before = di < 0 or (di == 0 and dj < 0)
            mask &= (h > neighbour) if before else (h >= neighbour)
    return mask


def _parabola_offset(l: float, c: float, r: float) -> float:
    """Vertex of the parabola through (-1, l), (0, c), (1, r), or 0 when it is not a maximum."""
    den = l - 2.0 * c + r
    if den < 0:
        return 0.5 * (l - r) / den
    return 0.0


def _axis_offset(h: np.ndarray, i: int, j: int, di: int, dj: int, mode: str) -> float:
    """Refinement offset along one axis (``(di, dj)`` is the unit step) for ``quadratic`` /
    ``gaussian`` (rule 1.2), before clamping."""
    hh, ww = h.shape
    il, jl, ir, jr = i - di, j - dj, i + di, j + dj
    if not (0 <= il < hh and 0 <= jl < ww and 0 <= ir < hh and 0 <= jr < ww):
        return 0.0
    l, c, r = float(h[il, jl]), float(h[i, j]), float(h[ir, jr])
    if mode == "gaussian" and l > 0 and c > 0 and r > 0:
        return _parabola_offset(math.log(l), math.log(c), math.log(r))
    return _parabola_offset(l, c, r)


def _refine(h: np.ndarray, i: int, j: int, mode: str) -> Tuple[float, float]:
    """Sub-cell offset ``(dx, dy)`` of the peak at cell (i, j), each clamped to [-0.5, 0.5]."""
    if mode == "none":
        dx = dy = 0.0
    elif mode in ("quadratic", "gaussian"):
        dx = _axis_offset(h, i, j, 0, 1, mode)
        dy = _axis_offset(h, i, j, 1, 0, mode)
    elif mode == "centroid":
        hh, ww = h.shape
        sw = swx = swy = 0.0
        for ii in range(i - 1, i + 2):
            for jj in range(j - 1, j + 2):
                if 0 <= ii < hh and 0 <= jj < ww:
                    w = max(float(h[ii, jj]), 0.0)
                    sw += w
                    swx += w * (jj - j)
                    swy += w * (ii - i)
        dx, dy = (swx / sw, swy / sw) if sw != 0 else (0.0, 0.0)
    else:  # DecoderConfig validates the mode; this guards direct callers
        raise ValueError(f"refine: unknown mode {mode!r}")
    return min(max(dx, -0.5), 0.5), min(max(dy, -0.5), 0.5)


def find_peaks_reference(h: np.ndarray, stride: float, config: DecoderConfig) -> List[Peak]:
    """Section 1 for one (H, W) channel: the peaks, by descending score (ties: raster order)."""
    h = np.asarray(h, dtype=np.float64)
    ii, jj = np.nonzero(_nms_mask(h, config.peak_threshold, config.nms_radius))  # raster order
    found = []
    for raster, (i, j) in enumerate(zip(ii.tolist(), jj.tolist())):
        dx, dy = _refine(h, i, j, config.refine)
        x = (j + dx + 0.5) * stride - 0.5
        y = (i + dy + 0.5) * stride - 0.5
        found.append((float(h[i, j]), raster, Peak(x, y, float(h[i, j]))))
    # Rule 1.4: the strongest max_peaks (ties: raster order), ordered by score. Keeping the first
    # max_peaks of the sorted list is exactly that.
    found.sort(key=lambda t: (-t[0], t[1]))
    return [p for _, _, p in found[: config.max_peaks]]


# --------------------------------------------------------------------------------------------
# Section 2: limb candidates
# --------------------------------------------------------------------------------------------


def _bilinear(m: np.ndarray, u: float, w: float) -> float:
    """Bilinear sample of the (H, W) map ``m`` at map coordinate (u, w), already clamped."""
    hh, ww = m.shape
    x0, y0 = int(math.floor(u)), int(math.floor(w))
    x1, y1 = min(x0 + 1, ww - 1), min(y0 + 1, hh - 1)
    fx, fy = u - x0, w - y0
    top = (1.0 - fx) * m[y0, x0] + fx * m[y0, x1]
    bottom = (1.0 - fx) * m[y1, x0] + fx * m[y1, x1]
    return float((1.0 - fy) * top + fy * bottom)


def _sample_count(length: float, paf_stride: float, config: DecoderConfig) -> int:
    """Rule 2.2: the number of samples on a segment of ``length`` input pixels."""
    if config.paf_sample_step == 0:
        return config.paf_samples
    n = math.floor(length / paf_stride / config.paf_sample_step) + 1
    return int(min(max(n, config.paf_samples), config.max_paf_samples))


def _limb_score(
    pa: Peak, pb: Peak, pafx: np.ndarray, pafy: np.ndarray, paf_stride: float, input_height: float,
    config: DecoderConfig,
) -> Optional[float]:
    """Rules 2.1-2.7 for one pair of peaks: the limb score, or None when there is no candidate."""
    dx, dy = pb.x - pa.x, pb.y - pa.y
    length = math.sqrt(dx * dx + dy * dy)
    if length < 1e-6:
        return None
    ex, ey = dx / length, dy / length
    n = _sample_count(length, paf_stride, config)
    hp, wp = pafx.shape
    q = []
    for m in range(n):
        t = m / (n - 1)
        px, py = pa.x + t * dx, pa.y + t * dy
        u = min(max((px + 0.5) / paf_stride - 0.5, 0.0), wp - 1.0)
        w = min(max((py + 0.5) / paf_stride - 0.5, 0.0), hp - 1.0)
        q.append(_bilinear(pafx, u, w) * ex + _bilinear(pafy, u, w) * ey)
    passing = [v for v in q if v > config.paf_threshold]
    count = len(passing)
    if not (count >= config.min_sample_fraction * n and count > 0):
        return None
    score = sum(q) / n if config.limb_score == "mean" else sum(passing) / count
    if config.length_prior > 0:
        score += min(0.0, config.length_prior * input_height / length - 1.0)
    if not score > config.min_limb_score:
        return None
    return score


# --------------------------------------------------------------------------------------------
# Section 3: matching
# --------------------------------------------------------------------------------------------


def assignment_max(weights: np.ndarray) -> List[Tuple[int, int]]:
    """A maximum-sum assignment of the rows of ``weights`` (R, Q) to distinct columns.

    Every row is assigned when R <= Q (else every column); returns (row, column) pairs sorted by
    row. The Hungarian method with potentials (Kuhn 1955, Munkres 1957), O(R^2 Q): each row in
    turn is added by a shortest augmenting path in the reduced costs, which stay non-negative.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights: expected a 2-D array, got shape {w.shape}")
    transposed = w.shape[0] > w.shape[1]
    if transposed:
        w = w.T
    rows, cols = w.shape
    if rows == 0:
        return []
    cost = -w  # minimise cost = maximise weight
    inf = math.inf
    # 1-based arrays; column 0 is a virtual column that holds the row being inserted.
    u = [0.0] * (rows + 1)  # row potentials
    v = [0.0] * (cols + 1)  # column potentials
    owner = [0] * (cols + 1)  # owner[j]: the row assigned to column j (0 = none)
    way = [0] * (cols + 1)  # way[j]: the previous column on the shortest path to j
    for i in range(1, rows + 1):
        owner[0] = i
        j0 = 0
        minv = [inf] * (cols + 1)
        used = [False] * (cols + 1)
        while True:
            used[j0] = True
            i0 = owner[j0]
            delta, j1 = inf, 0
            for j in range(1, cols + 1):
                if not used[j]:
                    reduced = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if reduced < minv[j]:
                        minv[j], way[j] = reduced, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(cols + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if owner[j0] == 0:  # reached a free column: augment along the path
                break
        while j0 != 0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(owner[j] - 1, j - 1) for j in range(1, cols + 1) if owner[j] != 0]
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    return sorted(pairs)


def _match(
    candidates: List[Connection], n_a: int, n_b: int, mode: str
) -> List[Connection]:
    """Section 3: the accepted connections of one limb, by descending key (ties: A id, B id)."""
    ordered = sorted(candidates, key=lambda c: (-c.key, c.a, c.b))
    if mode == "greedy":
        used_a, used_b, accepted = set(), set(), []
        for c in ordered:
            if c.a not in used_a and c.b not in used_b:
                used_a.add(c.a)
                used_b.add(c.b)
                accepted.append(c)
        return accepted
    # optimal: a maximum-weight matching over the candidate pairs. A pair without a candidate has
    # weight 0 and a candidate with key <= 0 is clipped to 0, so the dense assignment's optimum is
    # the best matching; pairs of weight 0 are then dropped (they cannot raise the sum).
    if not candidates:
        return []
    weights = np.zeros((n_a, n_b))
    by_pair = {(c.a, c.b): c for c in candidates}
    for c in candidates:
        weights[c.a, c.b] = max(c.key, 0.0)
    chosen = [by_pair[(a, b)] for a, b in assignment_max(weights) if (a, b) in by_pair and by_pair[(a, b)].key > 0]
    return sorted(chosen, key=lambda c: (-c.key, c.a, c.b))


# --------------------------------------------------------------------------------------------
# Sections 4-5: assembly and persons out
# --------------------------------------------------------------------------------------------


def _assemble(
    connections: Sequence[Tuple[int, Connection]], peaks: List[List[Peak]], topology: Topology,
    merge: bool,
) -> List[_Person]:
    """Section 4: grow persons from ``(limb index, connection)`` in the given order."""
    n = topology.num_keypoints
    persons: List[_Person] = []  # in creation order
    for k, con in connections:
        a, b = topology.limbs[k]
        s = con.score
        score_a, score_b = peaks[a][con.a].score, peaks[b][con.b].score
        # 4.1: the persons holding A in slot a or B in slot b; at most two, the first two.
        found = [p for p in persons if p.slots[a] == con.a or p.slots[b] == con.b][:2]
        if len(found) == 1:  # 4.2
            p = found[0]
            if p.slots[b] == -1:
                p.slots[b] = con.b
                p.parts += 1
                p.total += score_b + s
            elif p.slots[a] == -1:  # then p.slots[b] == B
                p.slots[a] = con.a
                p.parts += 1
                p.total += score_a + s
        elif len(found) == 2:  # 4.3
            p1, p2 = found
            overlap = any(x != -1 and y != -1 for x, y in zip(p1.slots, p2.slots))
            if merge and not overlap:
                for c in range(n):
                    if p2.slots[c] != -1:
                        p1.slots[c] = p2.slots[c]
                p1.parts += p2.parts
                p1.total += p2.total + s
                persons.remove(p2)
        elif topology.starts_person[k]:  # 4.4
            slots = [-1] * n
            slots[a], slots[b] = con.a, con.b
            persons.append(_Person(slots, total=score_a + score_b + s, parts=2))
    return persons


def _person_score(p: _Person, mode: str, n: int, parts_exponent: float) -> float:
    """Rule 5.2: the reported score."""
    if mode == "mean":
        return p.total / p.parts
    if mode == "tao":
        return 1.0 - 1.0 / max(p.total, 1e-6)  # finite for any total (docs/decoder.md 5.2)
    return (p.total / p.parts) * (p.parts / n) ** parts_exponent  # mean_parts


def _decode_one(
    heat: np.ndarray, paf: np.ndarray, hs: float, ps: float, topology: Topology, config: DecoderConfig
) -> Poses:
    """Sections 1-5 for one image: ``heat`` (H, W, C) and ``paf`` (Hp, Wp, 2K), float64."""
    n = topology.num_keypoints
    # Section 1: peaks of every keypoint channel (the background channel is never read).
    peaks = [find_peaks_reference(heat[:, :, c], hs, config) for c in range(n)]
    input_height = heat.shape[0] * hs

    # Sections 2 and 3: per limb, candidates then matching.
    accepted: List[List[Connection]] = []
    for (a, b), (cx, cy) in zip(topology.limbs, topology.paf_channels):
        pafx, pafy = paf[:, :, cx], paf[:, :, cy]
        candidates = []
        ends_a, ends_b = peaks[a][:MAX_LIMB_PEAKS], peaks[b][:MAX_LIMB_PEAKS]  # 2: the strongest 128 of each end
        for ia, pa in enumerate(ends_a):
            partners = list(enumerate(ends_b))
            if 0 < config.nearest_partners < len(partners):  # 2.0: the nearest, then in id order
                near = sorted(partners, key=lambda q: ((q[1].x - pa.x) ** 2 + (q[1].y - pa.y) ** 2, q[0]))
                partners = sorted(near[: config.nearest_partners], key=lambda q: q[0])
            for ib, pb in partners:
                score = _limb_score(pa, pb, pafx, pafy, ps, input_height, config)
                if score is not None:
                    key = score + config.peak_score_weight * (pa.score + pb.score)
                    candidates.append(Connection(ia, ib, score, key))
        accepted.append(_match(candidates, len(ends_a), len(ends_b), config.matching))

    # Section 4: the order in which connections are processed.
    # ``limb``: limb 0's connections in their order, then limb 1's, ...; ``score``: all together.
    order = [(k, c) for k, cons in enumerate(accepted) for c in cons]
    if config.assembly_order == "score":
        order.sort(key=lambda kc: (-kc[1].key, kc[0], kc[1].a, kc[1].b))
    persons = _assemble(order, peaks, topology, config.merge)
    if config.min_parts <= 1:  # 4.5: every peak no person holds is a person of one part
        for c in range(n):
            held = {p.slots[c] for p in persons}
            for pid, pk in enumerate(peaks[c]):
                if pid not in held:
                    slots = [-1] * n
                    slots[c] = pid
                    persons.append(_Person(slots, total=pk.score, parts=1))

    # Section 5: filter, score, order, cap.
    kept = [p for p in persons if p.parts >= config.min_parts and p.total / p.parts >= config.min_person_score]
    scored = [(_person_score(p, config.person_score, n, config.parts_exponent), p) for p in kept]
    scored.sort(key=lambda sp: -sp[0])  # stable: ties keep creation order
    scored = scored[: config.max_persons]
    keypoints = np.zeros((len(scored), n, 3), dtype=np.float32)
    scores = np.zeros((len(scored),), dtype=np.float32)
    for m, (s, p) in enumerate(scored):
        scores[m] = s
        for c, pid in enumerate(p.slots):
            if pid != -1:
                pk = peaks[c][pid]
                keypoints[m, c] = (pk.x, pk.y, pk.score)
    return Poses(keypoints, scores, topology)


def decode_reference(
    heatmap: np.ndarray,
    paf: np.ndarray,
    *,
    heatmap_stride: float,
    paf_stride: Optional[float] = None,
    layout: str = "NHWC",
    topology: Topology = BODYPOSENET,
    config: Optional[DecoderConfig] = None,
) -> Union[Poses, List[Poses]]:
    """Decode heatmaps and PAFs into persons, following ``docs/decoder.md`` literally.

    Args:
        heatmap: (H, W, C) or (B, H, W, C) in NHWC; (C, H, W) or (B, C, H, W) in NCHW;
            C = N + 1 (the last channel, background, is not read). Any real dtype.
        paf: the same layout with 2K channels; its H x W may differ from the heatmap's.
        heatmap_stride: input pixels per heatmap cell.
        paf_stride: input pixels per PAF cell (default: ``heatmap_stride``).
        layout: ``"NHWC"`` or ``"NCHW"``, for both maps.
        topology: keypoints and limbs.
        config: thresholds and choices (default ``DecoderConfig()``).
    Returns:
        :class:`Poses` in input pixels for a 3-D input, a list of them for a 4-D batch.
    Raises:
        InputError: a map, stride or layout that cannot be used, with what is wrong.
    """
    if layout not in LAYOUTS:
        raise InputError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    if config is None:
        config = DecoderConfig()
    if not isinstance(config, DecoderConfig):
        raise InputError(f"config: expected a DecoderConfig, got {type(config).__name__}")
    hs = _check_stride("heatmap_stride", heatmap_stride)
    ps = hs if paf_stride is None else _check_stride("paf_stride", paf_stride)
    heat_arr, paf_arr = np.asarray(heatmap), np.asarray(paf)
    if heat_arr.ndim != paf_arr.ndim:
        raise InputError(f"heatmap and paf: both 3-D or both 4-D, got shapes {heat_arr.shape} and {paf_arr.shape}")
    heat = _as_hwc_batch("heatmap", heat_arr, layout, topology.heatmap_channels)
    pafs = _as_hwc_batch("paf", paf_arr, layout, topology.paf_channel_count)
    if heat.shape[0] != pafs.shape[0]:
        raise InputError(f"heatmap and paf: batch sizes differ, {heat.shape[0]} vs {pafs.shape[0]}")
    out = [_decode_one(heat[b], pafs[b], hs, ps, topology, config) for b in range(heat.shape[0])]
    return out if heat_arr.ndim == 4 else out[0]


# --------------------------------------------------------------------------------------------
# Rendering (ground truth)
# --------------------------------------------------------------------------------------------


def _check_render_args(
    keypoints: np.ndarray, shape: Sequence[int], stride: float, layout: str, topology: Topology
) -> Tuple[np.ndarray, int, int, float]:
    kp = np.asarray(keypoints, dtype=np.float64)
    n = topology.num_keypoints
    if kp.ndim != 3 or kp.shape[1:] != (n, 3):
        raise InputError(f"keypoints: expected shape (M, {n}, 3), got {kp.shape}")
    if not np.all(np.isfinite(kp)):
        raise InputError("keypoints: holds NaN or infinite values")
    if len(shape) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in shape):
        raise InputError(f"shape: expected the map's (H, W), two positive ints, got {shape!r}")
    if layout not in LAYOUTS:
        raise InputError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    return kp, int(shape[0]), int(shape[1]), _check_stride("stride", stride)


def _to_layout(hwc: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(hwc if layout == "NHWC" else hwc.transpose(2, 0, 1), dtype=np.float32)


def render_heatmaps_reference(
    keypoints: np.ndarray,
    *,
    shape: Tuple[int, int],
    stride: float,
    sigma: float = 1.0,
    layout: str = "NHWC",
    topology: Topology = BODYPOSENET,
) -> np.ndarray:
    """Ground-truth heatmaps (spec "Rendering"): float32 (H, W, N + 1), or (N + 1, H, W) for NCHW.

    ``keypoints`` (M, N, 3) in input pixels, visible where the third value > 0; ``sigma`` in cells.
    """
    kp, hh, ww, s = _check_render_args(keypoints, shape, stride, layout, topology)
    sig = _check_stride("sigma", sigma)
    n = topology.num_keypoints
    out = np.zeros((hh, ww, n + 1))
    ii, jj = np.meshgrid(np.arange(hh, dtype=np.float64), np.arange(ww, dtype=np.float64), indexing="ij")
    for person in kp:
        for c in range(n):
            x, y, v = person[c]
            if not v > 0:
                continue
            u, w = (x + 0.5) / s - 0.5, (y + 0.5) / s - 0.5
            exponent = ((u - jj) ** 2 + (w - ii) ** 2) / (2.0 * sig * sig)
            g = np.where(exponent > GAUSSIAN_CUTOFF, 0.0, np.exp(-exponent))
            out[:, :, c] = np.maximum(out[:, :, c], g)
    out = out.astype(np.float32)
    out[:, :, n] = np.maximum(0.0, 1.0 - out[:, :, :n].max(axis=2))
    return _to_layout(out, layout)


def render_pafs_reference(
    keypoints: np.ndarray,
    *,
    shape: Tuple[int, int],
    stride: float,
    width: float = 1.0,
    layout: str = "NHWC",
    topology: Topology = BODYPOSENET,
) -> np.ndarray:
    """Ground-truth PAFs (spec "Rendering"): float32 (H, W, 2K), or (2K, H, W) for NCHW.

    Each cell within ``width`` cells of a limb's segment holds the unit vector from -> to,
    averaged over the persons whose limb covers it.
    """
    kp, hh, ww, s = _check_render_args(keypoints, shape, stride, layout, topology)
    half = _check_stride("width", width)
    ii, jj = np.meshgrid(np.arange(hh, dtype=np.float64), np.arange(ww, dtype=np.float64), indexing="ij")
    out = np.zeros((hh, ww, topology.paf_channel_count))
    for (a, b), (cx, cy) in zip(topology.limbs, topology.paf_channels):
        sum_x, sum_y = np.zeros((hh, ww)), np.zeros((hh, ww))
        count = np.zeros((hh, ww))
        for person in kp:
            if not (person[a, 2] > 0 and person[b, 2] > 0):
                continue
            ua, wa = (person[a, 0] + 0.5) / s - 0.5, (person[a, 1] + 0.5) / s - 0.5
            ub, wb = (person[b, 0] + 0.5) / s - 0.5, (person[b, 1] + 0.5) / s - 0.5
            du, dw = ub - ua, wb - wa
            length2 = du * du + dw * dw
            length = math.sqrt(length2)
            if length <= 1e-6:
                continue
            # Distance from each cell centre to the segment (ends included): project the centre
            # on the line, clamp the parameter to [0, 1], measure to that point.
            t = np.clip(((jj - ua) * du + (ii - wa) * dw) / length2, 0.0, 1.0)
            dist2 = (jj - (ua + t * du)) ** 2 + (ii - (wa + t * dw)) ** 2
            inside = dist2 <= half * half
            sum_x[inside] += du / length
            sum_y[inside] += dw / length
            count[inside] += 1
        covered = count > 0
        out[covered, cx] = sum_x[covered] / count[covered]
        out[covered, cy] = sum_y[covered] / count[covered]
    return _to_layout(out, layout)
