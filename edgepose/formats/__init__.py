"""Model file formats: content-based detection (ONNX, TensorRT engine, TAO .etlt)."""

from .detect import ModelFormat, detect_format, require_onnx, source_name

__all__ = ["ModelFormat", "detect_format", "require_onnx", "source_name"]
