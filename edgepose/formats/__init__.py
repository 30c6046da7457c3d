"""Model file formats: content-based detection (ONNX, TensorRT engine, TAO .etlt), the TAO
container (:mod:`.etlt`), engine files with their stored spec (:mod:`.engine`), TensorRT INT8
calibration caches (:mod:`.calib`) and how an engine gets its precision on TensorRT 10 and 11
(:mod:`.precision`).

Only :mod:`.detect` is imported eagerly; the others load ``cryptography`` / ``onnx`` when used.
"""

from .detect import ModelFormat, detect_format, require_onnx, source_name

__all__ = ["ModelFormat", "detect_format", "require_onnx", "source_name", "read_etlt", "pack_etlt",
           "write_etlt", "decrypt_tlt"]


def __getattr__(name: str):
    if name in ("read_etlt", "pack_etlt", "write_etlt", "decrypt_tlt"):
        from . import etlt

        return getattr(etlt, name)
    raise AttributeError(f"module 'edgepose.formats' has no attribute {name!r}")
