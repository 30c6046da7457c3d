"""Developer tools for edgepose models; not shipped in the wheel.

- :mod:`tools.train`: a slim PyTorch BodyPoseNet-style trainer and its ONNX exporter
  (``pip install -e .[train]``).
- :mod:`tools.calibrate`: INT8 calibration of an ONNX pose model (a TensorRT calibration cache and a
  QDQ ONNX model for ONNX Runtime).

See ``docs/tools.md``.
"""
