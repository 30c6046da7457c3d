"""The backend seam: what every inference runtime (ONNX Runtime, TensorRT, ...) offers edgepose.

A backend is built from a model (a path or the model's bytes, so a decrypted TAO payload never has
to touch the disk), describes its tensors as :class:`TensorSpec` values and runs one feed dict at a
time. Everything above it (spec detection, pre-processing, decoding) only sees this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Tuple, Union, runtime_checkable

import numpy as np

__all__ = ["Backend", "BackendBase", "Dim", "TensorSpec"]

Dim = Union[int, str, None]
"""One dimension of a tensor: an int when fixed, a symbolic name (str) or None when dynamic."""


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the runtime reports it.

    Attributes:
        name: the tensor's name in the model (e.g. ``image``, ``input_1:0``).
        shape: one :data:`Dim` per axis; dynamic axes are a symbolic name or None.
        dtype: numpy dtype name (``float32``, ``float16``, ...).
    """

    name: str
    shape: Tuple[Dim, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        """The number of axes."""
        return len(self.shape)

    def fixed(self, axis: int) -> Optional[int]:
        """The size of ``axis`` when it is fixed, else None."""
        d = self.shape[axis]
        return d if isinstance(d, int) and d > 0 else None

    @property
    def is_static(self) -> bool:
        """True when every axis has a fixed size."""
        return all(self.fixed(i) is not None for i in range(self.rank))

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@runtime_checkable
class Backend(Protocol):
    """What edgepose needs from an inference runtime.

    ``run`` takes and returns numpy arrays keyed by tensor name; dynamic dimensions of ``inputs`` and
    ``outputs`` are symbolic names or None. A backend owns its runtime resources until ``close()``
    (idempotent); it is a context manager.
    """

    name: str
    """Registry name of the backend (``onnxruntime``, ``tensorrt``)."""

    @property
    def version(self) -> str: ...

    @property
    def inputs(self) -> List[TensorSpec]: ...

    @property
    def outputs(self) -> List[TensorSpec]: ...

    @property
    def metadata(self) -> Dict[str, str]: ...

    def run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def describe(self) -> Dict[str, Any]: ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: Any) -> None: ...


class BackendBase:
    """Shared behaviour of the concrete backends: context manager, ``describe()``, feed checks.

    Subclasses set ``name``, fill ``_inputs``, ``_outputs`` (and ``_metadata``) when they open the
    model, and implement ``version``, ``_run`` and ``_close``.
    """

    name: str = "base"
    selection: Optional[Dict[str, Any]] = None
    """How :func:`edgepose.backends.create` chose this backend (requested name, backends passed over
    and why, the decrypted source); None when the class was constructed directly."""

    def __init__(self) -> None:
        self._closed = False
        self._inputs: List[TensorSpec] = []
        self._outputs: List[TensorSpec] = []
        self._metadata: Dict[str, str] = {}

    # -- to implement --------------------------------------------------------------------------
    @property
    def version(self) -> str:
        raise NotImplementedError

    @property
    def inputs(self) -> List[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> List[TensorSpec]:
        return list(self._outputs)

    @property
    def metadata(self) -> Dict[str, str]:
        """Free-form key/value metadata stored in the model (ONNX ``metadata_props``); may be empty."""
        return dict(self._metadata)

    def _run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the model on ``feed`` (input name -> array) and return every output by name.

        Each array must have the input's rank and match its fixed dimensions; it is converted to the
        input's dtype when it differs (e.g. float32 data for a float16 model).

        Raises:
            ValueError: a missing, unknown or mis-shaped input (the message names it).
            RuntimeError: the backend was closed.
        """
        if self._closed:
            raise RuntimeError(f"{self.name} backend: run() after close()")
        return self._run(self._check_feed(feed))

    def _check_feed(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        specs = {t.name: t for t in self.inputs}
        unknown = sorted(set(feed) - set(specs))
        missing = sorted(set(specs) - set(feed))
        if unknown or missing:
            raise ValueError(
                f"{self.name} backend: feed has inputs {sorted(feed)}, the model takes {sorted(specs)}"
                + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else "")
            )
        out = {}
        for name, value in feed.items():
            spec = specs[name]
            arr = np.asarray(value)
            if arr.ndim != spec.rank:
                raise ValueError(f"{self.name} backend: input {name!r} needs {spec.rank} axes "
                                 f"{list(spec.shape)}, got shape {arr.shape}")
            for axis in range(spec.rank):
                want = spec.fixed(axis)
                if want is not None and arr.shape[axis] != want:
                    raise ValueError(f"{self.name} backend: input {name!r} has a fixed shape {list(spec.shape)}; "
                                     f"got {arr.shape} (axis {axis} must be {want})")
            if arr.dtype != np.dtype(spec.dtype):
                arr = arr.astype(spec.dtype)
            out[name] = arr
        return out

    def close(self) -> None:
        """Release the runtime's resources; later calls to ``run`` raise. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> BackendBase:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> Dict[str, Any]:
        """A JSON-serialisable summary: backend, version, tensors and model metadata."""
        d = {
            "backend": self.name,
            "version": self.version,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "metadata": dict(self.metadata),
        }
        if self.selection is not None:
            d["selection"] = dict(self.selection)
        return d

    def __repr__(self) -> str:
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in self.inputs)
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self.name} {self.version}{state}: {ins}>"
