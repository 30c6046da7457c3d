"""edgepose: fast multi-person 2D pose estimation for edge devices.

    from edgepose import EdgePose
    with EdgePose("model.onnx") as model:
        poses = model.infer(frame)          # Poses: keypoints (M, 18, 3), scores (M,)

For users who run the network themselves, :func:`decode` turns raw heatmaps and part affinity
fields into :class:`Poses`. Heavy dependencies (ONNX Runtime, TensorRT, CUDA) are imported only
when a backend that needs them is chosen.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .config import DecoderConfig

# Eager on purpose: the function `decode` shares its name with the submodule `edgepose.decode`;
# importing it here binds the name to the function once, so a later `import edgepose.decode`
# (EdgePose does one) cannot replace it with the module. It costs numpy and the C++ module only.
from .decode import Decoder, decode
from .errors import BackendUnavailable, DecryptionError, EdgePoseError, InputError, ModelFormatError, SpecError
from .results import Poses
from .topology import BODYPOSENET, Topology

__all__ = [
    "__version__",
    "BODYPOSENET",
    "BackendUnavailable",
    "Decoder",
    "DecoderConfig",
    "DecryptionError",
    "EdgePose",
    "EdgePoseError",
    "InputError",
    "ModelFormatError",
    "ModelSpec",
    "PoseTracker",
    "Poses",
    "SpecError",
    "Topology",
    "decode",
    "render_heatmaps",
    "render_pafs",
]

# Public names that live in modules with heavier imports, loaded on first use.
_LAZY = {
    "render_heatmaps": ("edgepose.render", "render_heatmaps"),
    "render_pafs": ("edgepose.render", "render_pafs"),
    "EdgePose": ("edgepose.pipeline", "EdgePose"),
    "ModelSpec": ("edgepose.spec", "ModelSpec"),
    "PoseTracker": ("edgepose.tracking", "PoseTracker"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgepose' has no attribute {name!r}")
