"""``edgepose infer``: run a model on an image, a folder of images, a video, a camera or a stream.

Writes annotated images (``--out`` a file for one image, a folder for a folder of images) or an
annotated video (mp4v, the source's fps and size, one output frame per decoded input frame), and
JSON lines (``--json``; one record per frame). Without ``--out`` and ``--json`` the JSON lines go
to stdout. A frame or image that cannot be decoded is reported on stderr and skipped; Ctrl-C
closes the outputs cleanly (video finalised, JSON flushed) and exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple

from ..errors import InputError
from ._common import (
    FRAME_ERRORS,
    IMAGE_EXTENSIONS,
    CLIError,
    Reporter,
    add_accuracy_options,
    add_model_options,
    check_new_file,
    check_not_input,
    frame_problem,
    input_identities,
    list_images,
    model_inputs,
    open_model,
    read_image,
)

HELP = "run a model on an image, folder, video, camera or stream"

# A source with a scheme OpenCV's FFmpeg/GStreamer backends open as a network stream.
_STREAM = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", re.IGNORECASE)

# Video containers read with the mp4v codec's fps; cameras that report no fps get this one.
_FALLBACK_FPS = 30.0

# Give up on a video after this many undecodable frames in a row (a broken file, not a glitch).
_MAX_BAD_FRAMES_IN_A_ROW = 25

INTERRUPTED = 130  # the shell's exit status for a process ended by SIGINT

_FFMPEG_LOGLEVEL = "OPENCV_FFMPEG_LOGLEVEL"  # the variable OpenCV reads for FFmpeg's log level


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("infer", help=HELP, description=__doc__.split("\n\n")[0])
    p.add_argument("source", metavar="SOURCE",
                   help="an image, a folder of images, a video file, a camera index (0, 1, ...) "
                        "or a stream URL (rtsp://, http://, ...)")
    add_model_options(p)
    add_accuracy_options(p)
    p.add_argument("--out", "-o", type=Path, default=None, metavar="PATH",
                   help="annotated output: an image file for an image, a folder for a folder, "
                        "a video file (.mp4) for a video, camera or stream")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="write JSON lines here, one record per frame ('-' for stdout)")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--track", action="store_true",
                   help="give each person a stable id across frames (a folder is read as an image sequence); "
                        "the JSON persons get 'id' and 'box', the overlay colours persons by id")
    p.add_argument("--smooth", action="store_true",
                   help="smooth the tracked keypoints over time (One Euro filter); implies --track")
    return p


@dataclass
class Frame:
    """One decoded input: ``image`` (H, W, 3) BGR, or None with ``error`` when it failed."""

    index: int
    name: str
    image: Any = None
    error: Optional[str] = None
    time_ms: Optional[float] = None  # the video's own time of the frame (CAP_PROP_POS_MSEC), when it has one


class _Images:
    """Image files, decoded one at a time (a failure is a Frame with ``error``, not an exception)."""

    def __init__(self, paths: List[Path]) -> None:
        self.paths = paths
        self.total: Optional[int] = len(paths)
        self.fps = 0.0

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            try:
                yield Frame(i, str(path), read_image(path))
            except InputError as e:
                yield Frame(i, str(path), error=str(e))

    def close(self) -> None:
        pass


class _Video:
    """A cv2.VideoCapture over a file, camera index or stream URL."""

    def __init__(self, source: str, target: Any, what: str) -> None:
        import cv2

        self.name = source
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            self.cap.release()
            hint = " (not an image or a video OpenCV can read)" if what == "video" else ""
            raise CLIError(f"{source}: cannot open {what}{hint}")
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        # Cameras and streams report no (or a bogus negative) frame count.
        self.total = count if count > 0 and what == "video" else None
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else _FALLBACK_FPS

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        bad_in_a_row = 0
        while True:
            ok, image = self.cap.read()
            if ok and image is not None:
                bad_in_a_row = 0
                yield Frame(index, self.name, image, time_ms=self._position_ms())
                index += 1
                continue
            # A failed read is the end, unless a file says more frames follow (a corrupt frame).
            if self.total is None or index >= self.total - 1 or bad_in_a_row >= _MAX_BAD_FRAMES_IN_A_ROW:
                return
            bad_in_a_row += 1
            yield Frame(index, self.name, error=f"{self.name}: frame {index} cannot be decoded")
            index += 1

    def _position_ms(self) -> Optional[float]:
        import cv2

        ms = float(self.cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
        return ms if ms == ms and ms >= 0.0 else None

    def close(self) -> None:
        self.cap.release()


class _FrameClock:
    """Frame times in seconds for the tracker: the video's own (CAP_PROP_POS_MSEC) while they
    increase, else frame index / fps; always increasing (a camera that reports no time, or a
    container whose times jump back, still gives a usable clock)."""

    def __init__(self, fps: float) -> None:
        self.fps = fps if fps > 0 else _FALLBACK_FPS
        self.last: Optional[float] = None

    def __call__(self, frame: Frame) -> float:
        t = frame.time_ms / 1000.0 if frame.time_ms is not None else None
        if t is None or (self.last is not None and t <= self.last):
            t = frame.index / self.fps
        if self.last is not None and t <= self.last:
            t = self.last + 1.0 / self.fps
        self.last = t
        return t


class _StopOnInterrupt:
    """Turn the first Ctrl-C into a request to stop after the current frame.

    So a frame's JSON line, annotated output and counters are written all or not at all. A second
    Ctrl-C raises KeyboardInterrupt at once (for a source that blocks, such as a stalled stream).
    Signal handlers belong to the main thread; elsewhere Ctrl-C keeps Python's default behaviour.
    """

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous: Any = signal.SIG_DFL

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopOnInterrupt:
        # Only the main thread may set handlers; an ignored SIGINT (nohup, a background job) stays so.
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
            previous = signal.signal(signal.SIGINT, self._handle)
            # None: a handler not set from Python; Python's default is the closest we can restore.
            self._previous = previous if previous is not None else signal.default_int_handler
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


def _open_source(text: str) -> Tuple[str, Any]:
    """(kind, source) where kind is ``image``, ``folder`` or ``video`` (files, cameras, streams)."""
    if text.isdigit():
        return "video", _Video(f"camera {text}", int(text), "camera")
    if _STREAM.match(text):
        return "video", _Video(text, text, "stream")
    path = Path(text)
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise CLIError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        return "folder", _Images(images)
    if not path.exists():
        raise CLIError(f"{path}: no such file or folder")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        read_image(path)  # one image that cannot be decoded is an error, raised before the model loads
        return "image", _Images([path])
    return "video", _Video(str(path), str(path), "video")


class _VideoOut:
    """An mp4v video writer opened on the first frame (its size is the frame's)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: Any = None
        self.frames = 0

    def write(self, image: Any) -> None:
        import cv2

        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                self.writer = None
                raise CLIError(f"--out {self.path}: cannot write an mp4v video here (use a .mp4 or .avi name)")
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def _image_outputs(kind: str, source: Any, out: Optional[Path], overwrite: bool, inputs: Any = ()) -> Dict[str, Path]:
    """Output path per input image, checked before any work is done."""
    if out is None:
        return {}
    if kind == "image":
        src = source.paths[0]
        target = out / src.name if out.is_dir() else out
        if target.exists() and target.resolve() == src.resolve():
            raise CLIError(f"--out {out}: is the source image; choose another path")
        _check_image_writer(target)
        return {str(src): check_new_file(target, overwrite, "--out", inputs)}
    # A folder: --out is a folder (created when missing); never the source folder itself.
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: is a file; a folder of images needs an output folder")
    first = source.paths[0]
    if out.exists() and out.resolve() == first.parent.resolve():
        raise CLIError(f"--out {out}: is the source folder; choose another folder")
    if not out.parent.is_dir():
        raise CLIError(f"--out {out}: folder {out.parent} does not exist")
    targets = {}
    for p in source.paths:
        target = out / p.name
        if target.exists() and not overwrite:
            raise CLIError(f"--out {target}: already exists (pass --overwrite to replace it)")
        check_not_input(target, inputs, "--out")
        targets[str(p)] = target
    _check_image_writer(first)
    return targets


def _check_image_writer(path: Path) -> None:
    import cv2

    if not cv2.haveImageWriter(str(path)):
        raise CLIError(f"--out {path}: OpenCV cannot write images of this kind (use .jpg or .png)")


def _record(frame: Frame, poses: Any, timings: Dict[str, float]) -> Dict[str, Any]:
    """The JSON-lines record of one frame."""
    h, w = frame.image.shape[:2]
    body = poses.to_dict()
    return {
        "source": frame.name,
        "frame": frame.index,
        "width": int(w),
        "height": int(h),
        "topology": body["topology"],
        "persons": body["persons"],
        "timings": {k: round(float(v), 3) for k, v in timings.items()},
    }


@contextlib.contextmanager
def _quiet_video_io() -> Iterator[None]:
    """Silence OpenCV's and FFmpeg's own log lines (a failed open prints several, a damaged frame
    more); edgepose reports each problem as one line of its own. Restores the previous levels."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    previous = os.environ.get(_FFMPEG_LOGLEVEL)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ[_FFMPEG_LOGLEVEL] = "-8"  # AV_LOG_QUIET; OpenCV reads it when it opens a capture
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)
        if previous is None:
            os.environ.pop(_FFMPEG_LOGLEVEL, None)
        else:
            os.environ[_FFMPEG_LOGLEVEL] = previous


def run(args: argparse.Namespace) -> int:
    with _quiet_video_io():
        kind, source = _open_source(args.source)
        # A bar for folders and videos; one image needs none.
        report = Reporter("edgepose infer", progress=not args.no_progress and kind != "image")
        try:
            return _run(args, kind, source, report)
        finally:
            source.close()


def _run(args: argparse.Namespace, kind: str, source: Any, report: Reporter) -> int:
    # Check every output before the (slow) model load, so a mistake costs nothing. No output may be
    # an input (the sources, the model and its JSON, --spec), not even a hard link to one.
    sources = source.paths if kind != "video" else [Path(args.source)] if Path(args.source).is_file() else []
    inputs = input_identities([*sources, *model_inputs(args)])
    image_out = _image_outputs(kind, source, args.out, args.overwrite, inputs) if kind != "video" else {}
    video_out: Optional[_VideoOut] = None
    if kind == "video" and args.out is not None:
        if args.out.exists() and args.out.resolve() == Path(source.name).resolve():
            raise CLIError(f"--out {args.out}: is the source video; choose another path")
        video_out = _VideoOut(check_new_file(args.out, args.overwrite, "--out", inputs), source.fps)
    json_to_stdout = str(args.json) == "-" or (args.json is None and args.out is None)
    if args.json is not None and not json_to_stdout:
        check_new_file(args.json, args.overwrite, "--json", inputs)
        if args.out is not None and args.json.resolve() == args.out.resolve():
            raise CLIError(f"--json {args.json}: is also the --out path")
        inputs = source.paths if kind != "video" else [Path(args.source)]
        if args.json.exists() and any(args.json.resolve() == p.resolve() for p in inputs):
            raise CLIError(f"--json {args.json}: is a source file; choose another path")

    model = open_model(args)
    tracker, clock = None, _FrameClock(source.fps)
    if args.track or args.smooth:  # --smooth implies --track
        from ..tracking import PoseTracker

        tracker = PoseTracker(smooth=args.smooth, fps=clock.fps)
    if image_out and kind == "folder":
        args.out.mkdir(exist_ok=True)
    json_file: Optional[IO[str]] = None
    frames = persons = skipped = 0
    interrupted = False
    try:
        json_file = sys.stdout if json_to_stdout else (open(args.json, "w", encoding="utf-8") if args.json else None)
        report.start(source.total if kind != "image" else None)
        try:
            with _StopOnInterrupt() as stop:
                for frame in source:
                    if stop.requested:
                        interrupted = True
                        break
                    if frame.error is not None:
                        report.message(f"skipped: {frame.error}")
                        skipped += 1
                        report.advance()
                        continue
                    try:
                        poses = model.infer(frame.image)
                    except FRAME_ERRORS as e:  # this frame only (too wide, NaN maps): report, go on
                        where = frame.name if kind != "video" else f"{frame.name}: frame {frame.index}"
                        if kind == "image":
                            raise CLIError(f"{where}: {frame_problem(e)}") from None
                        report.message(f"skipped: {where}: {frame_problem(e)}")
                        skipped += 1
                        report.advance()
                        continue
                    if tracker is not None:
                        poses = tracker.update(poses, timestamp=clock(frame))
                    frames += 1
                    persons += len(poses)
                    if json_file is not None:
                        json_file.write(json.dumps(_record(frame, poses, model.last_timings)) + "\n")
                        json_file.flush()  # a consumer (or an interrupted run) sees whole lines
                    if video_out is not None or frame.name in image_out:
                        annotated = poses.draw(frame.image, copy=False)
                        if video_out is not None:
                            video_out.write(annotated)
                        else:
                            _write_image(image_out[frame.name], annotated)
                    report.advance()
                interrupted = interrupted or stop.requested
        except KeyboardInterrupt:
            interrupted = True
    finally:
        report.finish()
        if video_out is not None:
            video_out.close()
        if json_file is not None and json_file is not sys.stdout:
            json_file.close()
        model.close()
    wrote = [str(p) for p in (args.out, None if json_to_stdout else args.json) if p is not None]
    summary = f"{frames} frame{'s' if frames != 1 else ''}, {persons} person{'s' if persons != 1 else ''}"
    if skipped:
        summary += f", {skipped} skipped"
    if wrote:
        summary += f"; wrote {' and '.join(wrote)}"
    if interrupted:
        report.message(f"interrupted: {summary}")
        return INTERRUPTED
    if kind != "image" or not json_to_stdout:
        report.message(summary)
    return 0


def _write_image(path: Path, image: Any) -> None:
    import cv2

    if not cv2.imwrite(str(path), image):
        raise CLIError(f"--out {path}: cannot write the image")
