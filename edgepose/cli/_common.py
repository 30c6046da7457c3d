"""Helpers shared by the ``edgepose`` subcommands: model options, output checks, image reading,
stderr reporting and a small progress bar.

Only the standard library, numpy and OpenCV are imported here; the model runtime is imported when
a command opens a model, so ``edgepose --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import EdgePoseError, InputError, ModelOutputError

__all__ = [
    "CLIError",
    "FRAME_ERRORS",
    "frame_problem",
    "IMAGE_EXTENSIONS",
    "add_accuracy_options",
    "add_model_options",
    "open_model",
    "check_new_file",
    "check_not_input",
    "input_identities",
    "model_inputs",
    "list_images",
    "read_image",
    "Reporter",
    "one_line",
    "plain_text",
    "positive_int",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class CLIError(EdgePoseError):
    """A mistake in the command line (a missing file, an output that exists, ...)."""


FRAME_ERRORS = (InputError, ModelOutputError)
"""What ``model.infer`` raises for one frame that cannot be inferred (too wide for any input, NaN or inf
maps): the CLI skips and reports that frame and goes on."""


def frame_problem(error: BaseException) -> str:
    """The problem of one frame, without the API's ``frames[i]:`` prefix (the CLI names the file)."""
    return one_line(getattr(error, "reason", None) or error)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _input_size(text: str) -> Union[int, Tuple[int, int]]:
    """``HxW`` (e.g. ``368x656``) -> (height, width); ``H`` alone -> the target height (aspect kept)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHT or HEIGHTxWIDTH such as 368 or 368x656, got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def add_model_options(parser: argparse.ArgumentParser, *, model_flag: bool = True) -> None:
    """The options every model-running command shares: --model, --backend, --threads, --input-size, --spec."""
    if model_flag:
        parser.add_argument("--model", "-m", required=True, metavar="M", help="model file (.onnx, .etlt, .engine)")
    parser.add_argument("--backend", "-b", default="auto", metavar="B",
                        help="inference backend: auto (default), onnxruntime, tensorrt")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for the backend (default: the backend's choice)")
    parser.add_argument("--input-size", type=_input_size, default=None, metavar="HxW",
                        help="network input size: HEIGHTxWIDTH (e.g. 368x656), or HEIGHT alone for a model "
                             "of any size (aspect kept); default: from the model's spec")
    parser.add_argument("--spec", default=None, metavar="JSON",
                        help="a JSON file of ModelSpec fields overriding the detected ones (see edgepose info)")
    parser.add_argument("--key", default=None, metavar="KEY",
                        help="key of a TAO .etlt model (default: $EDGEPOSE_KEY, $TAO_KEY or nvidia_tlt)")


def scale_list(text: str) -> Tuple[float, ...]:
    """``--scales 1,1.5`` -> (1.0, 1.5) (checked by :func:`edgepose.tta.parse_scales`)."""
    from ..tta import parse_scales

    try:
        return parse_scales(text, "--scales")
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e).replace("--scales: ", "", 1)) from None


def add_accuracy_options(parser: Any) -> None:
    """Accuracy mode: --scales and --flip (see docs/accuracy.md)."""
    parser.add_argument("--scales", type=scale_list, default=None, metavar="1,1.5",
                        help="accuracy mode: run the network at these input scales (1 = the model's size) and "
                             "fuse the maps before decoding (default: 1, one run)")
    parser.add_argument("--flip", action="store_true",
                        help="accuracy mode: also run every scale on the mirrored frame and fuse it back")


def open_model(args: argparse.Namespace, model: Optional[str] = None) -> Any:
    """An :class:`edgepose.EdgePose` from the parsed model options.

    Raises:
        CLIError: the model file does not exist (before the runtime is imported at all).
    """
    path = Path(model if model is not None else args.model)
    if not path.exists():
        raise CLIError(f"{path}: model file not found")
    if path.is_dir():
        raise CLIError(f"{path}: is a directory, expected a model file")
    spec = getattr(args, "spec", None)
    if spec is not None and not Path(spec).is_file():
        raise CLIError(f"--spec {spec}: file not found")
    from ..pipeline import EdgePose

    return EdgePose(str(path), backend=args.backend, threads=args.threads, input_size=args.input_size, spec=spec,
                    key=getattr(args, "key", None), scales=getattr(args, "scales", None),
                    flip=getattr(args, "flip", False))


def model_inputs(args: argparse.Namespace, model: Optional[str] = None) -> List[Path]:
    """The files a command reads for its model: the model, the JSON beside it (``<model>.edgepose.json``,
    ``<model>.json``, an engine's sidecar), ``--spec`` and ``--calib``: outputs must be none of them."""
    found: List[Path] = []
    name = model if model is not None else getattr(args, "model", None)
    if name is not None:
        path = Path(name)
        found += [path, path.with_name(path.stem + ".edgepose.json"), path.with_name(path.stem + ".json"),
                  path.with_name(path.name + ".edgepose.json")]
    found += [Path(p) for p in (getattr(args, "spec", None), getattr(args, "calib", None)) if p is not None]
    return found


InputFiles = Union[Sequence[Union[str, "os.PathLike[str]"]], Mapping[Tuple[int, int], Path]]


def _identity(path: Union[str, os.PathLike[str]]) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def input_identities(inputs: Sequence[Union[str, os.PathLike[str]]]) -> Mapping[Tuple[int, int], Path]:
    """(device, inode) -> path for the existing ``inputs``: what :func:`check_not_input` compares, made
    once for many outputs (a folder of images)."""
    found: Dict[Tuple[int, int], Path] = {}
    for item in inputs:
        key = _identity(item)
        if key is not None:
            found.setdefault(key, Path(item))
    return found


def check_not_input(path: Path, inputs: InputFiles, what: str) -> None:
    """Refuse an output that is one of ``inputs``: the same path, or the same file under another name
    (a hard link or a symlink: ``os.path.samefile``'s test, same device and inode). Refused even with
    ``--overwrite``."""
    key = _identity(path)
    if key is None:
        return
    known = inputs if isinstance(inputs, Mapping) else input_identities(inputs)
    if key in known:
        p = known[key]
        how = "" if path.resolve() == p.resolve() else " (a hard link or symlink to it)"
        raise CLIError(f"{what} {path}: is a source file or other input (the same file as {p}{how}); choose another "
                       "path (--overwrite does not change this: it would destroy the input)")


def check_new_file(path: Path, overwrite: bool, what: str, inputs: InputFiles = ()) -> Path:
    """``path``, after checking that it may be written: its folder exists, it is none of ``inputs``
    (see :func:`check_not_input`), and it does not exist unless ``overwrite``. ``what`` names the
    option in the message (e.g. ``--json``)."""
    check_not_input(path, inputs, what)
    if path.is_dir():
        raise CLIError(f"{what} {path}: is a directory, expected a file path")
    if path.exists() and not overwrite:
        raise CLIError(f"{what} {path}: already exists (pass --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"{what} {path}: folder {parent} does not exist")
    return path


def list_images(folder: Path) -> List[Path]:
    """The image files directly in ``folder`` (by extension, case-insensitive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_image(path: Path) -> Any:
    """Decode an image file to (H, W, 3) uint8 BGR.

    Raises:
        InputError: the file cannot be read or decoded.
    """
    import cv2
    import numpy as np

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise InputError(f"{path}: cannot read image ({e.strerror or e})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError(f"{path}: cannot decode image (not an image, truncated or corrupt)")
    return image


class Reporter:
    """Messages and optional progress on one stream (stderr).

    On a terminal, progress is a bar redrawn in place (``total`` frames expected, or an unknown
    number shown as a count); :meth:`message` clears it first so lines never interleave. On
    anything else (a log file, a pipe, CI), progress is one plain line every ``interval`` seconds,
    ``prog: 40/130 frames, 3.1 fps``, so a long run is never silent.
    """

    INTERVAL = 10.0  # seconds between progress lines when the stream is not a terminal

    def __init__(self, prog: str, stream: Optional[IO[str]] = None, *, progress: bool = True,
                 interval: Optional[float] = None) -> None:
        self.prog = prog
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.show_bar = progress and bool(isatty and isatty())
        self.show_lines = progress and not self.show_bar
        self.interval = self.INTERVAL if interval is None else interval
        self.total: Optional[int] = None
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._last_line = self._start
        self._bar_visible = False

    def message(self, text: str) -> None:
        """Print ``prog: text`` on its own line."""
        self._clear()
        print(f"{self.prog}: {text}", file=self.stream, flush=True)
        self._draw(force=True)

    def start(self, total: Optional[int]) -> None:
        """Begin counting; ``total`` None or <= 0 means unknown."""
        self.total = total if total and total > 0 else None
        self.done = 0
        self._start = self._last_line = time.perf_counter()
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()
        self._line()

    def finish(self) -> None:
        """Stop the progress for good (the final counts belong in a summary message)."""
        self._clear()
        self.show_bar = self.show_lines = False

    def _counts(self, now: float) -> str:
        rate = self.done / max(now - self._start, 1e-9)
        done = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        return f"{done} frames, {rate:.1f} fps"

    def _line(self) -> None:
        """The plain progress line, at most every ``interval`` seconds (stream not a terminal)."""
        now = time.perf_counter()
        if self.show_lines and now - self._last_line >= self.interval:
            self._last_line = now
            print(f"{self.prog}: {self._counts(now)}", file=self.stream, flush=True)

    def _clear(self) -> None:
        if self._bar_visible:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._bar_visible = False

    def _draw(self, force: bool = False) -> None:
        if not self.show_bar or (self.total is None and self.done == 0 and not force):
            return
        now = time.perf_counter()
        if not force and now - self._last_draw < 0.1:  # at most 10 redraws a second
            return
        self._last_draw = now
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            width = 30
            frac = min(self.done / self.total, 1.0)
            filled = int(math.floor(frac * width))
            bar = "#" * filled + "." * (width - filled)
            line = f"{self.prog} [{bar}] {self.done}/{self.total} {rate:5.1f}/s"
        else:
            line = f"{self.prog} {self.done} frames {rate:5.1f}/s"
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()
        self._bar_visible = True


_MARKUP = re.compile(r":[a-z]+:`~?([^`]+)`|``([^`]+)``")


def plain_text(text: str) -> str:
    """``text`` (a docstring) without reST markup, as a terminal shows it: ``x`` and :role:`x` -> x."""
    return _MARKUP.sub(lambda m: (m.group(1) or m.group(2)), text)


def one_line(error: BaseException) -> str:
    """An exception's message on one line (user errors are reported as exactly one line)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__
