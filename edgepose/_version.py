"""The single source of edgepose's version (setup.py, CMake and the C++ module read it)."""

__version__ = "0.1.0"
