"""Measuring what edgepose does on a device: stage latencies, throughput, memory, the machine itself.

The library half of ``edgepose-bench`` (the command line lives in :mod:`edgepose.cli.bench`):

    with EdgePose("tfpose_mobilenet_thin.onnx") as model:
        run = bench_pipeline(model, synthetic_frames(4, (720, 1280)), batch=1, frames=50, warmup=5)
    run["latency_ms"]["inference"]["median"], run["fps"]

    heat, paf, _ = synthetic_crowd(50)                       # maps of 50 people, 46 x 69 cells
    run = bench_decoder(Decoder(), heat, paf, heatmap_stride=8, frames=100)

Every figure is wall-clock time from :func:`time.perf_counter`. Latencies are per *call* (one call
handles one batch of ``batch`` frames); throughput is frames per second over the timed calls.
Memory is the process's resident set (RSS, from ``/proc`` and ``getrusage``) plus what
:mod:`tracemalloc` sees of the Python side (numpy arrays included); both are sampled outside the
timed loop so that they do not disturb it.

Nothing here imports a model runtime: the caller passes an open :class:`~edgepose.EdgePose` or a
:class:`~edgepose.decode.Decoder`.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._version import __version__
from .topology import BODYPOSENET, Topology

__all__ = [
    "SCHEMA",
    "STAGES",
    "STEADY_RSS_MIB",
    "STEADY_PYTHON_KIB",
    "percentiles",
    "describe_device",
    "rss_mib",
    "peak_rss_mib",
    "python_allocations",
    "synthetic_frames",
    "synthetic_crowd",
    "bench_pipeline",
    "bench_decoder",
]

SCHEMA = "edgepose-bench/1"
"""The ``schema`` key of the JSON report; it changes only when a key changes meaning or goes away."""

STAGES = ("preprocess", "inference", "decode", "total")
"""The pipeline stages timed per call (as :attr:`edgepose.EdgePose.last_timings` names them)."""

STEADY_RSS_MIB = 1.0
"""RSS growth over the timed calls above this (MiB) counts as 'steady-state frames allocate'."""

STEADY_PYTHON_KIB = 64.0
"""Net growth of traced Python memory above this (KiB) over the probe calls counts as allocating."""

Progress = Optional[Callable[[int], None]]
"""A callback told how many frames were just timed (drives a progress bar)."""


# -- statistics ----------------------------------------------------------------------------------
def percentiles(ms: Sequence[float]) -> Dict[str, float]:
    """``{"median", "p90", "p99", "mean"}`` of a non-empty list of milliseconds (linear interpolation)."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("percentiles: no samples")
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


# -- the machine ---------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model", "Hardware")):  # x86; Jetson / other ARM boards
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cores() -> int:
    """CPUs this process may run on (its affinity mask; a container or ``taskset`` narrows it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _gpus(timeout_s: float = 10.0) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """NVIDIA GPUs as ``nvidia-smi`` reports them, and the CUDA version its driver supports.

    Returns ``([], None)`` when nvidia-smi is absent or fails (no GPU, no driver): a description,
    not a check, so it never raises.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], None
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout_s, check=True).stdout
        banner = subprocess.run([smi], capture_output=True, text=True, timeout=timeout_s).stdout
    except (OSError, subprocess.SubprocessError):
        return [], None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            memory = float(parts[2]) if re.fullmatch(r"[0-9.]+", parts[2]) else None
            gpus.append({"name": parts[0], "driver": parts[1], "memory_mib": memory})
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", banner)
    return gpus, cuda.group(1) if cuda else None


def describe_device() -> Dict[str, Any]:
    """Where the figures were measured: CPU, GPUs, OS and the Python-side software versions.

    Keys: ``cpu`` (model name), ``cores`` (logical CPUs of the machine), ``usable_cores`` (of this
    process), ``gpus`` (list of ``{name, driver, memory_mib}``; empty without an NVIDIA driver),
    ``cuda`` (the driver's CUDA version or None), ``os``, ``python``, ``numpy``, ``opencv``,
    ``edgepose``.
    """
    gpus, cuda = _gpus()
    try:
        import cv2

        opencv: Optional[str] = cv2.__version__
    except ImportError:  # pragma: no cover - opencv is a dependency
        opencv = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 1,
        "usable_cores": _usable_cores(),
        "gpus": gpus,
        "cuda": cuda,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": opencv,
        "edgepose": __version__,
    }


# -- memory --------------------------------------------------------------------------------------
def rss_mib() -> float:
    """The process's resident set size now, in MiB (Linux ``/proc/self/statm``; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB (``getrusage``)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def python_allocations(call: Callable[[], Any], calls: int) -> Dict[str, float]:
    """What :mod:`tracemalloc` sees of ``calls`` calls of ``call`` after one untraced-growth call.

    Returns ``{"python_growth_kib", "python_peak_kib"}``: the net growth of traced memory over the
    calls (0 when each call frees what it allocates; results are dropped) and the largest transient
    allocation above the starting point (the arrays a call creates and frees). Tracing slows Python
    down, so this runs outside the timed loop. numpy's buffers are traced; memory that C++
    libraries allocate themselves (ONNX Runtime's arena, the decoder's scratch) shows in RSS only.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        call()  # the first traced call may fill caches that later calls reuse
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(calls):
            call()
        end, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return {"python_growth_kib": (end - start) / 1024, "python_peak_kib": max(peak - start, 0) / 1024}


def _memory(rss_start: float, rss_end: float, traced: Dict[str, float]) -> Dict[str, Any]:
    growth = rss_end - rss_start
    return {
        # getrusage's high-water mark is updated lazily by the kernel; never report less than seen.
        "peak_rss_mib": max(peak_rss_mib(), rss_start, rss_end),
        "rss_start_mib": rss_start,
        "rss_end_mib": rss_end,
        "rss_growth_mib": growth,
        **traced,
        "steady": bool(growth <= STEADY_RSS_MIB and traced["python_growth_kib"] <= STEADY_PYTHON_KIB),
    }


# -- inputs --------------------------------------------------------------------------------------
def synthetic_frames(count: int, size: Tuple[int, int], seed: int = 0) -> List[np.ndarray]:
    """``count`` frames of uniform random pixels, (H, W, 3) uint8 BGR of ``size`` = (H, W).

    Noise costs the network what a photo costs; the decoder finds few peaks in it, so decode time
    on real images (``--images``) is the figure to quote for post-processing.
    """
    h, w = int(size[0]), int(size[1])
    if count < 1 or h < 1 or w < 1:
        raise ValueError(f"synthetic_frames: need count >= 1 and a positive size, got {count} and {size}")
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(count)]


# A standing person facing the camera, in units of its height (x to the image right, y down), in
# BodyPoseNet / OpenPose-COCO-18 order. The person's right (r_*) is on the image's left.
_PERSON = np.array([
    (0.00, 0.06),                                            # nose
    (0.00, 0.18),                                            # neck
    (-0.12, 0.19), (-0.16, 0.34), (-0.18, 0.48),             # r_shoulder, r_elbow, r_wrist
    (0.12, 0.19), (0.16, 0.34), (0.18, 0.48),                # l_shoulder, l_elbow, l_wrist
    (-0.07, 0.52), (-0.08, 0.74), (-0.08, 0.96),             # r_hip, r_knee, r_ankle
    (0.07, 0.52), (0.08, 0.74), (0.08, 0.96),                # l_hip, l_knee, l_ankle
    (-0.03, 0.04), (0.03, 0.04), (-0.06, 0.06), (0.06, 0.06),  # r_eye, l_eye, r_ear, l_ear
], dtype=np.float64)
_FACE = np.arange(14, 18)  # r_eye, l_eye, r_ear, l_ear


def synthetic_crowd(people: int, map_size: Tuple[int, int] = (46, 69), stride: float = 8, *, seed: int = 0,
                    topology: Topology = BODYPOSENET) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmaps and PAFs of ``people`` persons, rendered with :mod:`edgepose.render`.

    The persons stand in a grid that fills the input (``map_size * stride`` pixels), one per cell,
    as tall as 80 % of a cell, with their joints jittered by up to 3 % of their height and a quarter
    of the eyes and ears left out; so 100 people in a 368 x 552 input are about 30 pixels (4 cells)
    tall, a dense crowd seen from afar. Deterministic for a given ``seed``.

    Returns:
        ``(heatmap (H, W, N + 1), paf (H, W, 2K), keypoints (people, N, 3))``: float32 maps in NHWC
        and the rendered keypoints (x, y, v) in input pixels.
    """
    from .render import render_heatmaps, render_pafs

    if people < 0:
        raise ValueError(f"people: expected a count >= 0, got {people}")
    if topology.num_keypoints != _PERSON.shape[0]:
        raise ValueError(f"synthetic_crowd draws the {_PERSON.shape[0]}-keypoint BodyPoseNet person; "
                         f"topology {topology.name!r} has {topology.num_keypoints}")
    mh, mw = int(map_size[0]), int(map_size[1])
    in_h, in_w = mh * stride, mw * stride
    rng = np.random.default_rng(seed)
    keypoints = np.zeros((people, topology.num_keypoints, 3), np.float64)
    if people:
        # Grid with cells about as wide as a standing person needs (aspect 1:2).
        cols = max(1, math.ceil(math.sqrt(people * in_w / in_h / 2)))
        rows = math.ceil(people / cols)
        cell_w, cell_h = in_w / cols, in_h / rows
        height = 0.8 * min(cell_h, 2 * cell_w)
        for m in range(people):
            r, c = divmod(m, cols)
            cx = (c + 0.5) * cell_w + rng.uniform(-0.05, 0.05) * cell_w
            top = r * cell_h + (cell_h - height) / 2
            xy = _PERSON * height + rng.uniform(-0.03, 0.03, size=_PERSON.shape) * height
            keypoints[m, :, 0] = cx + xy[:, 0]
            keypoints[m, :, 1] = top + xy[:, 1]
            # Body joints are always drawn (a missing neck splits a person in two, which is a test of
            # the decoder's grouping, not of its speed); each eye and ear is hidden with chance 1/4.
            keypoints[m, :, 2] = 2.0
            keypoints[m, _FACE, 2] = np.where(rng.random(len(_FACE)) < 0.25, 0.0, 2.0)
    heat = render_heatmaps(keypoints, shape=(mh, mw), stride=stride, topology=topology)
    paf = render_pafs(keypoints, shape=(mh, mw), stride=stride, topology=topology)
    return heat, paf, keypoints


# -- the benchmarks ------------------------------------------------------------------------------
def bench_pipeline(model: Any, frames: Sequence[np.ndarray], *, batch: int = 1, frames_to_time: int = 50,
                   warmup: int = 5, progress: Progress = None, memory_probe_calls: int = 3) -> Dict[str, Any]:
    """Time ``model.infer_batch`` on batches of ``batch`` frames taken in turn from ``frames``.

    Args:
        model: an open :class:`edgepose.EdgePose`.
        frames: the frames to cycle through (already decoded: reading files is not timed).
        batch: frames per call.
        frames_to_time: at least this many frames are timed (``ceil(frames_to_time / batch)`` calls).
        warmup: untimed calls first (ORT's first runs allocate and tune).
        progress: called with ``batch`` after each timed call.
        memory_probe_calls: calls traced by :mod:`tracemalloc` after the timed ones (0: skip).

    Returns:
        A JSON-ready dict: ``batch``, ``calls``, ``frames``, ``warmup``, ``latency_ms`` (per stage
        of :data:`STAGES`: :func:`percentiles` of the per-call milliseconds), ``frame_ms`` (the
        same for ``total / batch``), ``fps`` (frames / the sum of the per-call totals),
        ``persons_per_frame`` (mean) and ``memory`` (see :func:`bench_decoder`).
    """
    if batch < 1 or frames_to_time < 1 or warmup < 0:
        raise ValueError(f"bench_pipeline: need batch >= 1, frames_to_time >= 1, warmup >= 0; "
                         f"got {batch}, {frames_to_time}, {warmup}")
    if not frames:
        raise ValueError("bench_pipeline: no frames")
    cursor = 0

    def next_batch() -> List[np.ndarray]:
        nonlocal cursor
        out = [frames[(cursor + i) % len(frames)] for i in range(batch)]
        cursor = (cursor + batch) % len(frames)
        return out

    for _ in range(warmup):
        model.infer_batch(next_batch())
    calls = math.ceil(frames_to_time / batch)
    samples: Dict[str, List[float]] = {s: [] for s in STAGES}
    persons = 0
    rss_start = rss_mib()
    for _ in range(calls):
        poses = model.infer_batch(next_batch())
        persons += sum(len(p) for p in poses)
        for s in STAGES:
            samples[s].append(float(model.last_timings[s]))
        if progress is not None:
            progress(batch)
    rss_end = rss_mib()
    traced = python_allocations(lambda: model.infer_batch(next_batch()), memory_probe_calls) if memory_probe_calls \
        else {"python_growth_kib": 0.0, "python_peak_kib": 0.0}
    total_s = sum(samples["total"]) / 1e3
    return {
        "batch": batch,
        "calls": calls,
        "frames": calls * batch,
        "warmup": warmup,
        "latency_ms": {s: percentiles(samples[s]) for s in STAGES},
        "frame_ms": percentiles([t / batch for t in samples["total"]]),
        "fps": calls * batch / total_s,
        "persons_per_frame": persons / (calls * batch),
        "memory": _memory(rss_start, rss_end, traced),
    }


def bench_decoder(decoder: Any, heatmap: np.ndarray, paf: np.ndarray, *, heatmap_stride: float,
                  paf_stride: Optional[float] = None, layout: str = "NHWC", frames: int = 100, warmup: int = 5,
                  progress: Progress = None, memory_probe_calls: int = 3) -> Dict[str, Any]:
    """Time ``decoder.decode`` on the same maps ``frames`` times, after ``warmup`` untimed calls.

    Args:
        decoder: a :class:`edgepose.decode.Decoder` (or anything with its ``decode`` signature).
        heatmap, paf: one image's maps (3-D) or a batch (4-D) in ``layout``.
        frames: timed calls (each decodes the whole batch).
        heatmap_stride, paf_stride, layout: as :meth:`Decoder.decode` takes them.

    Returns:
        ``batch``, ``calls``, ``frames`` (calls x batch), ``warmup``, ``latency_ms``
        (``{"decode": percentiles}`` per call), ``fps``, ``persons`` (decoded from these maps, all
        images of a batch) and ``memory``: ``peak_rss_mib`` (of the process so far),
        ``rss_start_mib`` / ``rss_end_mib`` / ``rss_growth_mib`` (over the timed runs),
        ``python_growth_kib`` / ``python_peak_kib`` (see :func:`python_allocations`) and ``steady``
        (growth within :data:`STEADY_RSS_MIB` and :data:`STEADY_PYTHON_KIB`).
    """
    if frames < 1 or warmup < 0:
        raise ValueError(f"bench_decoder: need frames >= 1 and warmup >= 0, got {frames} and {warmup}")

    def once() -> Any:
        return decoder.decode(heatmap, paf, heatmap_stride=heatmap_stride, paf_stride=paf_stride, layout=layout)

    for _ in range(warmup):
        once()
    ms: List[float] = []
    rss_start = rss_mib()
    for _ in range(frames):
        t0 = time.perf_counter()
        poses = once()
        ms.append((time.perf_counter() - t0) * 1e3)
        if progress is not None:
            progress(1)
    rss_end = rss_mib()
    traced = python_allocations(once, memory_probe_calls) if memory_probe_calls \
        else {"python_growth_kib": 0.0, "python_peak_kib": 0.0}
    batch = int(np.shape(heatmap)[0]) if np.ndim(heatmap) == 4 else 1
    persons = sum(len(p) for p in poses) if isinstance(poses, list) else len(poses)
    return {
        "batch": batch,
        "calls": frames,
        "frames": frames * batch,
        "warmup": warmup,
        "latency_ms": {"decode": percentiles(ms)},
        "fps": frames * batch / (sum(ms) / 1e3),
        "persons": persons,
        "memory": _memory(rss_start, rss_end, traced),
    }
