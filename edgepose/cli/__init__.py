"""The ``edgepose`` command line: ``edgepose <command> [options]``.

Each command is one module of this package (``infer``, ``eval``, ``info``, ...) with two functions:

- ``add_parser(subparsers) -> argparse.ArgumentParser`` adds its subparser (and sets ``help``);
- ``run(args) -> int`` does the work and returns the exit status.

Commands are found by listing the package (modules whose names start with ``_`` are helpers), so a
new command is a new module and nothing else. Their imports must stay light: the model runtime is
imported inside ``run``.

Errors: a user's mistake (an :class:`~edgepose.errors.EdgePoseError`, a usage error, a file the
system refuses) prints ONE line on stderr and exits non-zero; Ctrl-C exits 130; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from types import ModuleType
from typing import List, NoReturn, Optional, Sequence

from .._version import __version__
from ..errors import EdgePoseError
from ._common import one_line, plain_text

__all__ = ["main", "build_parser", "commands"]

PROG = "edgepose"
USAGE_ERROR = 2  # argparse's (and the shells') status for a bad command line
USER_ERROR = 1
INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``prog: error: ... (see prog --help)``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        # Descriptions are the commands' docstrings: shown without their reST markup.
        return plain_text(super().format_help())


def commands() -> List[ModuleType]:
    """The command modules of this package, in name order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if not (callable(getattr(module, "add_parser", None)) and callable(getattr(module, "run", None))):
            raise TypeError(f"{module.__name__}: a command module needs add_parser(subparsers) and run(args)")
        found.append(module)
    return found


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one subparser per command module."""
    parser = _Parser(prog=PROG, description="Multi-person 2D pose estimation: inference, evaluation, tools.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in commands():
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``edgepose`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors (already printed)
        return e.code if isinstance(e.code, int) else USAGE_ERROR
    if getattr(args, "_run", None) is None:
        print(f"{PROG}: error: a command is required (see {PROG} --help)", file=sys.stderr)
        return USAGE_ERROR
    prog = f"{PROG} {args.command}"
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader of our standard output went away (`edgepose ... | head`): stop quietly, and
        # point stdout at devnull so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return USER_ERROR
    except EdgePoseError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return USER_ERROR
    except OSError as e:
        # The system refused a path the user named (permissions, a full disk, ...); other OS
        # errors have no file name and are treated as bugs.
        if e.filename is None:
            raise
        print(f"{prog}: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return USER_ERROR
