"""edgepose's exceptions.

Every error a user can cause is an :class:`EdgePoseError` with a message that names the file or
argument and the problem. The C++ decoder's and renderer's input errors arrive as :class:`InputError`
too (``edgepose._decoder`` registers the translation when it is imported).
"""

from __future__ import annotations


class EdgePoseError(Exception):
    """Base class of every error edgepose raises on purpose."""


class ModelFormatError(EdgePoseError, ValueError):
    """A model file is missing, truncated, corrupt or of an unsupported kind."""


class DecryptionError(ModelFormatError):
    """An encrypted TAO file could not be decrypted (wrong key or not a TAO model file)."""


class BackendUnavailable(EdgePoseError, RuntimeError):
    """The requested backend cannot run here; the message says what to install."""


class SpecError(EdgePoseError, ValueError):
    """A model description (ModelSpec) is inconsistent with the model or the input."""


class InputError(EdgePoseError, ValueError):
    """An input (image, frame, array) cannot be used as given."""


class ModelOutputError(EdgePoseError, ValueError):
    """A model's outputs for a frame cannot be decoded (NaN or inf: a bad weight, an FP16 overflow).

    ``frame`` is the frame's index in the call and ``reason`` the message without it (None when unset).
    """

    frame = None
    reason = None
