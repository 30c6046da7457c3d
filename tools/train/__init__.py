"""A slim BodyPoseNet-style trainer (PyTorch; ``pip install -e .[train]``), not part of the runtime.

- :mod:`.model`: the network (VGG-like or MobileNet-like backbone, initial + refinement stages).
- :mod:`.data`: COCO keypoints -> augmented crops, loss masks and targets from edgepose's renderer.
- :mod:`.loss`: masked L2 with intermediate supervision.
- :mod:`.train`: the loop (``python -m tools.train``): checkpoints, resume, fine-tuning, validation.
- :mod:`.export`: ONNX with TAO BodyPoseNet's deployable interface, optional ``.etlt`` packing.
"""
