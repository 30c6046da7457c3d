"""Hands the build of the C++ extension (csrc/) to CMake; all metadata lives in pyproject.toml.

CMakeLists.txt is the one description of the C++ build. Environment knobs:
  EDGEPOSE_BUILD_TYPE   CMake build type (default Release)
  EDGEPOSE_CMAKE_ARGS   extra arguments for the CMake configure step (space separated)
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "edgepose" / "_version.py").read_text()).group(1)


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_type = os.environ.get("EDGEPOSE_BUILD_TYPE", "Release")
        build_dir = Path(self.build_temp).resolve() / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
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
        subprocess.run(configure, check=True)
        jobs = str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "_decoder", "-j", jobs], check=True)


setup(ext_modules=[CMakeExtension("edgepose._decoder")], cmdclass={"build_ext": CMakeBuild})
