"""Hands the build of the C++ extension (csrc/) to CMake; all metadata lives in pyproject.toml.

CMakeLists.txt is the one description of the C++ build. Environment knobs:
  EDGEPOSE_BUILD_TYPE   CMake build type (default Release)
  EDGEPOSE_CMAKE_ARGS   extra arguments for the CMake configure step (space separated)
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "edgepose" / "_version.py").read_text()).group(1)


def fresh_build_dir(build_dir: Path, configure: List[str]) -> Tuple[Path, str]:
    """Empties ``build_dir`` unless its last configure ran with this same build environment;
    returns the stamp file to write once the configure step has succeeded.

    pip builds in a throw-away environment: a CMakeCache.txt left in the tree by an earlier
    ``pip install .`` names that environment's cmake, ninja and pybind11, which are gone by the
    next install, and CMake refuses to reuse it. The environment (the tools' paths and the
    configure arguments) is recorded beside the cache; a build from another environment starts
    from an empty folder, one from the same environment (``--no-build-isolation``) stays incremental.
    """
    env = {
        "cmake": shutil.which("cmake"),
        "ninja": shutil.which("ninja"),
        "python": sys.executable,
        "configure": configure,
    }
    stamp = build_dir / "edgepose-build-env.json"
    try:
        same = json.loads(stamp.read_text()) == env
    except (OSError, ValueError):
        same = False
    if not same and build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    return stamp, json.dumps(env)


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_type = os.environ.get("EDGEPOSE_BUILD_TYPE", "Release")
        build_dir = Path(self.build_temp).resolve() / ext.name
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            f"-DCMAKE_BUILD_TYPE={build_type}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DEDGEPOSE_VERSION={VERSION}",
            "-DEDGEPOSE_BUILD_PYTHON=ON",
        ]
        try:
            import ninja  # noqa: F401

            configure += ["-G", "Ninja"]
        except ImportError:
            pass
        configure += shlex.split(os.environ.get("EDGEPOSE_CMAKE_ARGS", ""))
        stamp, env = fresh_build_dir(build_dir, configure)
        subprocess.run(configure, check=True)
        stamp.write_text(env)
        jobs = str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "_decoder", "-j", jobs], check=True)


setup(ext_modules=[CMakeExtension("edgepose._decoder")], cmdclass={"build_ext": CMakeBuild})
