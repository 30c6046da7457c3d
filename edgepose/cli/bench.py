"""``edgepose bench`` (also ``edgepose-bench``): what a device delivers, stage by stage.

Runs a model on synthetic or real frames after a warm-up and reports, per batch size and backend,
the median / p90 / p99 / mean latency of each stage (pre-process, inference, decode, total), the
frames per second, the peak memory and whether steady-state frames allocate, with a description of
the device. ``--decoder-only`` times the C++ decoder alone, on stored maps (``--maps``) or on maps
rendered for K synthetic people. A plain table goes to stdout, the same numbers as JSON to
``--json`` (keys documented in docs/bench.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import BackendUnavailable
from ._common import (
    CLIError,
    Reporter,
    _input_size,
    add_accuracy_options,
    check_new_file,
    list_images,
    model_inputs,
    one_line,
    positive_int,
    read_image,
)

HELP = "measure latency per stage, FPS and memory of a model (or of the decoder alone) on this device"
PROG = "edgepose bench"

BACKEND_ERROR = 2
"""Exit status when a requested backend is unknown or not installed (one line on stderr)."""

DEFAULT_FRAME_SIZE = (720, 1280)
"""Synthetic frames are HD camera frames unless ``--frame-size`` says otherwise."""

DEFAULT_MAP_INPUT = (368, 552)
"""``--decoder-only`` without ``--input``: maps of a 368 x 552 input (46 x 69 cells at stride 8)."""

DEFAULT_PEOPLE = (1, 10, 50, 100)

_PRECISION = {"float32": "fp32", "float16": "fp16", "int8": "int8", "uint8": "int8", "float64": "fp64"}


def _count_list(text: str) -> Tuple[int, ...]:
    """``1,8`` -> (1, 8): positive ints, duplicates dropped, order kept."""
    out: List[int] = []
    for part in text.split(","):
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected positive integers separated by commas such as 1,8; "
                                             f"got {text!r}")
        if value not in out:
            out.append(value)
    return tuple(out)


def _people_list(text: str) -> Tuple[int, ...]:
    """``1,10,50`` -> (1, 10, 50): counts >= 0 (0 people: empty maps), duplicates dropped."""
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError:
        values = [-1]
    if min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected people counts >= 0 separated by commas such as 1,10,50,100; "
                                         f"got {text!r}")
    return tuple(dict.fromkeys(values))


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _size(text: str) -> Tuple[int, int]:
    value = _input_size(text)
    if isinstance(value, int):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 720x1280, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the bench options to ``p`` (shared by ``edgepose bench`` and ``edgepose-bench``)."""
    model = p.add_argument_group("model and runtime")
    model.add_argument("--model", "-m", default=None, metavar="M",
                       help="model file (.onnx, .etlt, .engine); not needed with --decoder-only")
    model.add_argument("--backend", "-b", default="auto", metavar="B",
                       help="inference backend: auto (default), a name such as onnxruntime, several "
                            "separated by commas, or 'all' (every installed backend)")
    model.add_argument("--threads", type=positive_int, default=None, metavar="N",
                       help="CPU threads for the backend (default: the backend's choice)")
    model.add_argument("--input", "--input-size", dest="input_size", type=_input_size, default=None,
                       metavar="HxW", help="network input size: HEIGHTxWIDTH, or HEIGHT alone for a model of any "
                                           "size (aspect kept); default: the model's spec. With --decoder-only: "
                                           "the input the synthetic maps belong to (default 368x552)")
    model.add_argument("--spec", default=None, metavar="JSON", help="a JSON file of ModelSpec fields")
    add_accuracy_options(model)  # timed beside the single-scale default, whose cost ratio is reported
    run = p.add_argument_group("what to run")
    run.add_argument("--batch", type=_count_list, default=(1,), metavar="1,8",
                     help="batch sizes to measure, separated by commas (default 1)")
    run.add_argument("--frames", type=positive_int, default=50, metavar="N",
                     help="timed frames per batch size (default 50); with --decoder-only, timed decodes")
    run.add_argument("--warmup", type=_non_negative_int, default=5, metavar="N",
                     help="untimed calls before timing (default 5)")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--images", type=Path, default=None, metavar="DIR",
                        help="time real images from this folder (read into memory first)")
    source.add_argument("--synthetic", action="store_true",
                        help="time frames of random pixels (the default)")
    run.add_argument("--frame-size", type=_size, default=DEFAULT_FRAME_SIZE, metavar="HxW",
                     help="size of the synthetic frames (default 720x1280)")
    dec = p.add_argument_group("decoder only")
    dec.add_argument("--decoder-only", action="store_true", help="time the decoder alone (no model)")
    dec.add_argument("--maps", type=Path, default=None, metavar="FILE.npz",
                     help="decode the heatmap/PAF pairs stored in this .npz (keys '<prefix>heatmap' and "
                          "'<prefix>paf'); default: maps rendered for --people synthetic persons")
    dec.add_argument("--people", type=_people_list, default=DEFAULT_PEOPLE, metavar="1,10,50,100",
                     help="synthetic crowd sizes (default 1,10,50,100)")
    dec.add_argument("--stride", type=_positive_float, default=8.0, metavar="S",
                     help="input pixels per heatmap cell (default 8); the PAF's follows from its size")
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, default=None, metavar="OUT",
                     help="write the report as JSON here ('-' for stdout instead of the table)")
    out.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help=HELP, description=__doc__.split("\n\n")[0])
    return configure(p)


# -- backends ------------------------------------------------------------------------------------
def _why_not(entry: Any) -> Optional[str]:
    """Why a registry entry cannot run here (None when it can)."""
    reason = getattr(entry, "reason", None)  # entries that can tell a missing device from a missing package
    if callable(reason):
        return reason()
    return None if entry.can_run() else f"not installed (pip install {entry.install})"


def _backends(text: str) -> Tuple[List[str], List[Dict[str, str]]]:
    """The backend names to run and, for ``all``, the ones skipped with why.

    Raises:
        BackendUnavailable: a named backend that is unknown or cannot run here.
    """
    from ..backends import REGISTRY

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BackendUnavailable(f"--backend: expected a name such as 'auto' or one of {sorted(REGISTRY)}")
    if names == ["all"]:
        reasons = {n: _why_not(e) for n, e in REGISTRY.items()}
        run = [n for n, r in reasons.items() if r is None]
        skipped = [{"backend": n, "reason": r} for n, r in reasons.items() if r is not None]
        if not run:
            raise BackendUnavailable("--backend all: no backend can run here: "
                                     + "; ".join(f"{s['backend']}: {s['reason']}" for s in skipped))
        return run, skipped
    for n in names:
        if n == "auto":
            continue
        entry = REGISTRY.get(n)
        if entry is None:
            raise BackendUnavailable(f"--backend {n}: unknown backend; available: {sorted(REGISTRY)}, 'auto' or 'all'")
        reason = _why_not(entry)
        if reason is not None:
            raise BackendUnavailable(f"--backend {n}: cannot run here: {reason}")
    return list(dict.fromkeys(names)), []


def _precision(model: Any) -> str:
    spec = model.spec
    dtype = next((t.dtype for t in model.backend.inputs if t.name == spec.input_name), "float32")
    return _PRECISION.get(dtype, dtype)


# -- frames and maps -----------------------------------------------------------------------------
def _frames(args: argparse.Namespace, reporter: Reporter) -> Tuple[List[Any], Dict[str, Any]]:
    from ..bench import synthetic_frames

    if args.images is None:
        size = args.frame_size
        return synthetic_frames(4, size), {"source": "synthetic", "frame_size": list(size), "images": 4}
    folder = args.images
    if not folder.is_dir():
        raise CLIError(f"--images {folder}: not a folder")
    paths = list_images(folder)
    if not paths:
        raise CLIError(f"--images {folder}: no images (.jpg, .png, ...) in it")
    reporter.message(f"reading {len(paths)} images from {folder}")
    frames = [read_image(p) for p in paths]
    return frames, {"source": "images", "frame_size": None, "images": len(frames), "folder": str(folder)}


def _map_pairs(path: Path, channels: Tuple[int, int]) -> List[Tuple[str, Any, Any, str]]:
    """``(prefix, heatmap, paf, layout)`` for every heatmap/PAF pair in an .npz file.

    Raises:
        CLIError: the file is missing or unreadable, holds no pair, or a pair has the wrong channels.
    """
    import numpy as np

    if not path.is_file():
        raise CLIError(f"--maps {path}: file not found")
    if not zipfile.is_zipfile(path):
        raise CLIError(f"--maps {path}: not an .npz file (expected an archive written by numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as e:
        raise CLIError(f"--maps {path}: not a readable .npz file ({one_line(e)})") from None
    pairs = []
    for key in sorted(arrays):
        if not key.endswith("heatmap") or key[:-len("heatmap")] + "paf" not in arrays:
            continue
        prefix = key[:-len("heatmap")]
        heat, paf = arrays[key], arrays[prefix + "paf"]
        if heat.ndim not in (3, 4) or heat.ndim != paf.ndim:
            raise CLIError(f"--maps {path}: {key} and {prefix}paf must both be 3-D (one image) or 4-D (a batch), "
                           f"got shapes {heat.shape} and {paf.shape}")
        ch, cp = channels
        if heat.shape[-1] == ch and paf.shape[-1] == cp:
            layout = "NHWC"
        elif heat.shape[-3] == ch and paf.shape[-3] == cp:
            layout = "NCHW"
        else:
            raise CLIError(f"--maps {path}: {key} {heat.shape} / {prefix}paf {paf.shape} do not have {ch} heatmap "
                           f"and {cp} PAF channels (first or last axis)")
        pairs.append((prefix.rstrip("_") or "maps", heat, paf, layout))
    if not pairs:
        raise CLIError(f"--maps {path}: no '<prefix>heatmap' / '<prefix>paf' pair among its keys {sorted(arrays)}")
    return pairs


# -- runs ----------------------------------------------------------------------------------------
def _run_pipeline(args: argparse.Namespace, reporter: Reporter, report: Dict[str, Any]) -> None:
    from ..bench import bench_pipeline
    from ..pipeline import EdgePose
    from ..preprocess import transform_for

    path = Path(args.model)
    if not path.is_file():
        raise CLIError(f"--model {path}: " + ("is a directory, expected a model file" if path.is_dir()
                                                else "model file not found"))
    if args.spec is not None and not Path(args.spec).is_file():
        raise CLIError(f"--spec {args.spec}: file not found")
    names, skipped = _backends(args.backend)
    frames, source = _frames(args, reporter)
    report["model"] = {"path": str(path), "name": path.stem, **source}
    report["skipped"] = skipped
    for entry in skipped:
        reporter.message(f"skipping backend {entry['backend']}: {entry['reason']}")
    # Accuracy mode is timed beside the default (one scale, no flip), so its cost is a ratio of one run.
    modes = [(None, False)] + ([(args.scales, args.flip)] if args.scales is not None or args.flip else [])
    for name, (scales, flip) in ((n, m) for n in names for m in modes):
        with EdgePose(str(path), backend=name, threads=args.threads, input_size=args.input_size,
                      spec=args.spec, scales=scales, flip=flip) as model:
            backend = model.backend
            info = backend.describe()
            base = {
                "backend": backend.name,
                "backend_version": backend.version,
                "providers": info.get("providers", []),
                "precision": _precision(model),
                "threads": args.threads,
                "input_size": list(transform_for(frames[0].shape[:2], model.spec).input_size),
                "scales": list(model.scales),
                "flip": model.flip,
            }
            for batch in args.batch:
                calls = math.ceil(args.frames / batch)
                reporter.message(f"{backend.name} batch {batch}: {args.warmup} warm-up + {calls} timed calls")
                bar = _bar(args)
                bar.start(calls * batch)
                try:
                    run = bench_pipeline(model, frames, batch=batch, frames_to_time=args.frames,
                                         warmup=args.warmup, progress=bar.advance)
                finally:
                    bar.finish()
                lat = run["latency_ms"]
                run["ratios"] = {"decode_vs_inference": lat["decode"]["median"] / lat["inference"]["median"]}
                if len(modes) > 1 and (scales, flip) != (None, False):
                    single = next(r for r in report["runs"] if r["backend"] == backend.name and r["batch"] == batch
                                  and r["scales"] == [1.0] and not r["flip"])
                    run["ratios"]["frame_ms_vs_single_scale"] = run["frame_ms"]["median"] / single["frame_ms"]["median"]
                ran = backend.describe().get("precision")  # OpenVINO: the precision it compiled to (bf16, f32)
                report["runs"].append({**base, **run, **({"precision": ran} if isinstance(ran, str) else {})})


def _bar(args: argparse.Namespace) -> Reporter:
    """A progress bar on stderr for one timed run (drawn only when stderr is a terminal)."""
    return Reporter(PROG, progress=not args.no_progress)


def _run_decoder(args: argparse.Namespace, reporter: Reporter, report: Dict[str, Any]) -> None:
    from ..bench import bench_decoder, synthetic_crowd
    from ..decode import Decoder
    from ..topology import BODYPOSENET

    decoder = Decoder(BODYPOSENET)
    jobs: List[Dict[str, Any]] = []
    if args.maps is not None:
        for prefix, heat, paf, layout in _map_pairs(args.maps, (BODYPOSENET.heatmap_channels,
                                                                BODYPOSENET.paf_channel_count)):
            hh = heat.shape[-3] if layout == "NHWC" else heat.shape[-2]
            ph = paf.shape[-3] if layout == "NHWC" else paf.shape[-2]
            try:  # the decoder's own checks (dtype, NaN / inf, sizes), as one line naming the file
                decoder.decode(heat, paf, heatmap_stride=args.stride, paf_stride=args.stride * hh / ph, layout=layout)
            except ValueError as e:
                raise CLIError(f"--maps {args.maps}: pair {prefix!r}: {one_line(e)}") from None
            jobs.append({"source": "maps", "name": prefix, "people": None, "heat": heat, "paf": paf,
                         "layout": layout, "map_size": [int(hh), int(heat.shape[-2] if layout == "NHWC" else
                                                                     heat.shape[-1])],
                         "heatmap_stride": args.stride, "paf_stride": args.stride * hh / ph})
        report["maps"] = {"path": str(args.maps), "pairs": len(jobs)}
    else:
        size = args.input_size if args.input_size is not None else DEFAULT_MAP_INPUT
        if isinstance(size, int):
            raise CLIError(f"--input {size}: --decoder-only needs HEIGHTxWIDTH (e.g. 368x552)")
        map_size = (math.ceil(size[0] / args.stride), math.ceil(size[1] / args.stride))
        for k in args.people:
            heat, paf, _ = synthetic_crowd(k, map_size, args.stride, seed=k)
            jobs.append({"source": "synthetic", "name": f"{k} people", "people": k, "heat": heat, "paf": paf,
                         "layout": "NHWC", "map_size": list(map_size), "heatmap_stride": args.stride,
                         "paf_stride": args.stride})
        report["maps"] = {"path": None, "input_size": list(size), "people": list(args.people)}
    bar = _bar(args)
    bar.start(len(jobs) * args.frames)
    try:
        for job in jobs:
            heat, paf = job.pop("heat"), job.pop("paf")
            run = bench_decoder(decoder, heat, paf, heatmap_stride=job["heatmap_stride"],
                                paf_stride=job["paf_stride"], layout=job["layout"], frames=args.frames,
                                warmup=args.warmup, progress=bar.advance)
            report["runs"].append({**job, **run})
    finally:
        bar.finish()
    synthetic = [r for r in report["runs"] if r["people"] is not None]
    if len(synthetic) >= 2:
        lo = min(synthetic, key=lambda r: r["people"])
        hi = max(synthetic, key=lambda r: r["people"])
        report["ratios"] = {"decode_most_vs_fewest_people": hi["latency_ms"]["decode"]["median"]
                            / lo["latency_ms"]["decode"]["median"]}


# -- output --------------------------------------------------------------------------------------
def _fmt(v: float) -> str:
    return f"{v:9.2f}" if v < 1000 else f"{v:9.0f}"


def table(report: Dict[str, Any]) -> str:
    """The report as a plain-text table (what ``edgepose bench`` prints)."""
    dev = report["device"]
    gpus = ", ".join(f"{g['name']} (driver {g['driver']})" for g in dev["gpus"]) or "none"
    lines = [f"device: {dev['cpu']}, {dev['usable_cores']}/{dev['cores']} cores; GPU: {gpus}"
             + (f"; CUDA {dev['cuda']}" if dev["cuda"] else ""),
             f"software: edgepose {dev['edgepose']}, Python {dev['python']}, numpy {dev['numpy']}, "
             f"OpenCV {dev['opencv']}"]
    head = f"{'median':>9} {'p90':>9} {'p99':>9} {'mean':>9}"
    if report["mode"] == "pipeline":
        m = report["model"]
        src = (f"synthetic {m['frame_size'][0]}x{m['frame_size'][1]} frames" if m["source"] == "synthetic"
               else f"{m['images']} images from {m['folder']}")
        lines.append(f"model: {m['name']} on {src}")
        for r in report["runs"]:
            prov = f" {','.join(r['providers'])}" if r["providers"] else ""
            threads = r["threads"] if r["threads"] is not None else "default"
            mode = "" if r["scales"] == [1.0] and not r["flip"] else (
                f"accuracy mode: scales {','.join(f'{s:g}' for s in r['scales'])}{' + flip' if r['flip'] else ''}, ")
            lines += ["", f"{r['backend']} {r['backend_version']}{prov}, {r['precision']}, threads {threads}, "
                          f"{mode}input {r['input_size'][0]}x{r['input_size'][1]}, batch {r['batch']}, "
                          f"{r['frames']} frames after {r['warmup']} warm-up calls",
                      f"  {'stage (ms per call)':<20} {head}"]
            for stage, p in r["latency_ms"].items():
                lines.append(f"  {stage:<20} " + " ".join(_fmt(p[k]) for k in ("median", "p90", "p99", "mean")))
            mem = r["memory"]
            lines += [f"  {'FPS':<20} {r['fps']:9.1f}   ({r['frame_ms']['median']:.2f} ms per frame, median; "
                      f"decode / inference {r['ratios']['decode_vs_inference']:.3f})",
                      *([f"  cost of accuracy mode: x{r['ratios']['frame_ms_vs_single_scale']:.2f} the single-scale "
                         "time per frame (same run)"] if "frame_ms_vs_single_scale" in r["ratios"] else []),
                      f"  memory: peak RSS {mem['peak_rss_mib']:.0f} MiB; over the timed calls RSS "
                      f"{mem['rss_growth_mib']:+.1f} MiB, Python {mem['python_growth_kib']:+.1f} KiB -> "
                      + ("steady (no growth)" if mem["steady"] else "GROWS")]
    else:
        maps = report["maps"]
        lines.append("decoder only: " + (f"maps from {maps['path']}" if maps["path"] else
                                         f"synthetic crowds at a {maps['input_size'][0]}x{maps['input_size'][1]} "
                                         "input"))
        lines += ["", f"  {'maps':<34} {'persons':>7} {head} {'FPS':>9}  {'steady':>6}"]
        for r in report["runs"]:
            p = r["latency_ms"]["decode"]
            label = f"{r['name']} ({r['map_size'][0]}x{r['map_size'][1]}, {r['layout']})"
            lines.append(f"  {label:<34} {r['persons']:>7} " + " ".join(_fmt(p[k]) for k in
                                                                         ("median", "p90", "p99", "mean"))
                         + f" {r['fps']:9.0f}  {'yes' if r['memory']['steady'] else 'NO':>6}")
        lines.append(f"  (ms per decode; peak RSS {report['memory']['peak_rss_mib']:.0f} MiB)")
        ratio = report.get("ratios", {}).get("decode_most_vs_fewest_people")
        if ratio is not None:
            lines.append(f"  decode time, most vs fewest people: x{ratio:.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..bench import SCHEMA, describe_device, peak_rss_mib

    if args.decoder_only and args.images is not None:
        raise CLIError("--images: not used with --decoder-only (use --maps FILE.npz or --people)")
    if not args.decoder_only and args.maps is not None:
        raise CLIError("--maps: only with --decoder-only")
    if not args.decoder_only and args.model is None:
        raise CLIError("--model is required (or --decoder-only to time the decoder alone)")
    json_out: Optional[Path] = None
    if args.json is not None and str(args.json) != "-":
        json_out = check_new_file(args.json, args.overwrite, "--json", model_inputs(args))
    reporter = Reporter(PROG, progress=False)  # messages only; each timed run draws its own bar
    report: Dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "decoder" if args.decoder_only else "pipeline",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": describe_device(),
        "runs": [],
    }
    try:
        if args.decoder_only:
            if args.model is not None:
                reporter.message("--decoder-only: --model is not loaded")
            _run_decoder(args, reporter, report)
        else:
            _run_pipeline(args, reporter, report)
    except BackendUnavailable as e:  # unknown, not installed, or its device / provider is missing
        print(f"{PROG}: error: {one_line(e)}", file=sys.stderr)
        return BACKEND_ERROR
    report["memory"] = {"peak_rss_mib": peak_rss_mib()}
    text = json.dumps(report, indent=1)
    if json_out is not None:
        json_out.write_text(text + "\n")
    if args.json is not None and str(args.json) == "-":
        print(text)
    else:
        print(table(report))
        if json_out is not None:
            print(f"JSON: {json_out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``edgepose-bench`` console script: ``edgepose bench`` under its own name."""
    from . import main as edgepose_main

    return edgepose_main(["bench", *(sys.argv[1:] if argv is None else argv)])
