"""``edgepose convert``: TAO ``.etlt`` -> ONNX, ONNX -> ``.etlt``, ``.etlt`` / ONNX -> TensorRT engine.

The output's suffix picks the conversion: ``.onnx`` (decrypt an ``.etlt``; with ``-t fp16`` also
convert the model to FP16, as TensorRT 11 needs for FP16 engines), ``.etlt`` (pack an ONNX model with
a key) or ``.engine`` / ``.plan`` / ``.trt`` (build with TensorRT, which must be installed here, for
the GPU it runs on). An engine gets a sidecar ``<engine>.edgepose.json`` with the model spec, so
``edgepose infer -m OUT.engine`` needs no other arguments.

    edgepose convert model.etlt -o model.onnx                      # key: --key, $EDGEPOSE_KEY, nvidia_tlt
    edgepose convert model.onnx -o model.fp16.onnx -t fp16         # FP16 weights, FP32 inputs/outputs
    edgepose convert model.etlt -o model.engine -t fp16 -p input_1:0,1x288x384x3,8x288x384x3,16x288x384x3
    edgepose convert model.onnx -o model.engine -t int8 --calib cal.bin --batch 1,4,8 --workspace 2048
    edgepose convert model.qdq.onnx -o model.engine -t int8        # a Q/DQ model (TensorRT 10 and 11)
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any, Dict, List, Tuple

from ..errors import ModelFormatError, SpecError
from ..formats.detect import check_onnx_loadable, onnx_metadata, parse_onnx
from ._common import CLIError, _input_size, add_accuracy_options, check_new_file, model_inputs

HELP = "convert models: .etlt -> .onnx, .onnx -> .etlt, .etlt/.onnx -> TensorRT .engine"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def _batch(text: str) -> Tuple[int, int, int]:
    parts = text.replace(":", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = (1, values[0], values[0])
    if len(values) != 3 or not (1 <= values[0] <= values[1] <= values[2]):
        raise argparse.ArgumentTypeError(f"expected MAX or MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return values  # type: ignore[return-value]


def _profile(text: str) -> Any:
    from ..formats.engine import parse_profile

    try:
        return parse_profile(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


MAX_WORKSPACE_MIB = 1 << 20
"""The largest builder workspace accepted: 1 TiB (in MiB), more memory than any GPU has (the largest
hold under 200 GB). A larger number is almost always a byte count typed where MiB are meant."""

_UNITS = {"": 1 << 20, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30,
          "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}


def _workspace(text: str) -> int:
    """``-w``: MiB as a plain number (``1024``), or with a unit: ``B`` (bytes, as tao-converter and
    trtexec's old ``--workspace`` in bytes), ``KiB``, ``MiB``, ``GiB``, ``TiB`` (K/M/G/T alone too,
    binary). Returns whole MiB, rounded up; at most :data:`MAX_WORKSPACE_MIB`."""
    import re

    m = re.fullmatch(r"\s*(\d{1,20})\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of MiB (1024) or one with a unit "
                                         f"(1GiB, 512MiB, 1073741824B), got {text!r}")
    n_bytes = int(m.group(1)) * _UNITS[unit]
    mib = -(-n_bytes // (1 << 20))
    if mib > MAX_WORKSPACE_MIB:
        n = int(m.group(1))
        hint = "" if unit else (f" (tao-converter's -w counts bytes, this one MiB: if you meant {n} bytes = "
                                f"{-(-n // (1 << 20))} MiB, write -w {n}B)")
        raise argparse.ArgumentTypeError(
            f"workspace {text} is {n_bytes / (1 << 40):.0f} TiB, more than any GPU has (limit 1TiB){hint}; give "
            "MiB (-w 1024) or a unit (-w 1GiB, -w 1073741824B)")
    return mib


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("convert", help=HELP, description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("input", metavar="IN", help="model to convert (.etlt or .onnx; detected by content)")
    p.add_argument("-o", "--output", "-e", required=True, metavar="OUT",
                   help="output file: .onnx, .etlt or .engine (-e as in tao-converter)")
    p.add_argument("-k", "--key", default=None, help="TAO key (default: $EDGEPOSE_KEY, $TAO_KEY or nvidia_tlt)")
    p.add_argument("-t", "--precision", choices=("fp32", "fp16", "int8"), default=None,
                   help="engine precision (default fp16; int8 needs --calib or a Q/DQ model); with -o *.onnx, "
                        "fp16 converts the model to FP16")
    p.add_argument("-c", "--calib", default=None, metavar="CACHE",
                   help="INT8 calibration cache for TensorRT 10 (text format, e.g. TAO's cal.bin); a cache from "
                        "another TensorRT version has its header rewritten, with a warning. TensorRT 11 has no caches: "
                        "it builds INT8 from Q/DQ models")
    p.add_argument("-p", "--profile", type=_profile, action="append", default=[], metavar="NAME,MIN,OPT,MAX",
                   help="optimisation profile as tao-converter's -p, e.g. input_1:0,1x288x384x3,8x288x384x3,"
                        "16x288x384x3 (repeat for several inputs)")
    p.add_argument("--batch", type=_batch, default=None, metavar="MIN,OPT,MAX",
                   help="profile for the image input that varies only the batch (default 1,1,1)")
    p.add_argument("-w", "--workspace", type=_workspace, default=None, metavar="MiB",
                   help="builder workspace limit in MiB (1024), or with a unit: 1GiB, 1073741824B (bytes, as "
                        "tao-converter's -w counts them); at most 1TiB (default: TensorRT's)")
    p.add_argument("--input-size", type=_input_size, default=None, metavar="HxW",
                   help="input size for a model whose size is dynamic (engine builds need a fixed one)")
    p.add_argument("--spec", default=None, metavar="JSON", help="ModelSpec fields overriding the detected ones")
    add_accuracy_options(p)  # engine builds: one optimisation profile per scale (batch doubled by --flip)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return p


def _load_onnx(args: argparse.Namespace, fmt: Any) -> Tuple[bytes, Any]:
    """The input as ONNX bytes (an .etlt is decrypted in memory) and the model for :func:`parse_onnx`:
    the parsed ModelProto of an ONNX file, the bytes of an .etlt payload (read_etlt validated them;
    they are parsed only where a conversion reads the graph)."""
    from ..formats import ModelFormat

    if fmt is ModelFormat.ETLT:
        from ..formats.etlt import read_etlt

        onnx_bytes = read_etlt(args.input, args.key).onnx_bytes()
        return onnx_bytes, onnx_bytes
    if fmt is ModelFormat.ONNX:
        onnx_bytes = Path(args.input).read_bytes()
        # A truncated file is refused here, not packed or built; the conversions read this parse.
        return onnx_bytes, parse_onnx(onnx_bytes, args.input)
    if fmt is ModelFormat.ENGINE:
        raise CLIError(f"{args.input}: already a TensorRT engine; convert the .onnx or .etlt it was built from")
    raise ModelFormatError(f"{args.input}: not an ONNX or TAO .etlt model")


def onnx_model_info(onnx_model: Any, where: str = "model") -> Any:
    """A :class:`~edgepose.spec.ModelInfo` read from an ONNX graph (bytes or ModelProto; no runtime needed).

    Raises:
        ModelFormatError: the bytes are not a parsable ONNX model (``where`` names the file).
    """
    from ..backends.base import TensorSpec
    from ..spec import ModelInfo

    model = parse_onnx(onnx_model, where)
    init = {t.name for t in model.graph.initializer}

    def specs(values: Any) -> List[TensorSpec]:
        out = []
        for v in values:
            if v.name in init:
                continue
            dims = v.type.tensor_type.shape.dim
            shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                          for d in dims)
            out.append(TensorSpec(v.name, shape))
        return out

    return ModelInfo(specs(model.graph.input), specs(model.graph.output), onnx_metadata(model, where))


def _engine(args: argparse.Namespace, onnx_bytes: bytes, model: Any, out: Path) -> Dict[str, Any]:
    from ..formats.engine import BuildOptions, profile_from_batch, scale_profiles, write_engine
    from ..spec import spec_for

    calib = None
    if args.calib is not None:
        from ..formats.calib import read_calibration_cache

        read_calibration_cache(args.calib)  # malformed caches fail here, before any TensorRT work
        calib = str(args.calib)
    model = parse_onnx(model, str(args.input))
    info = onnx_model_info(model, str(args.input))
    overrides: Dict[str, Any] = {}
    if isinstance(args.input_size, tuple):
        overrides["input_size"] = args.input_size
    elif isinstance(args.input_size, int):
        raise CLIError("--input-size: an engine needs HEIGHTxWIDTH, not a height alone")
    spec = spec_for(args.input, info, spec=args.spec, **overrides)
    profiles = list(args.profile)
    image = next(t for t in info.inputs if t.name == spec.input_name)
    if spec.input_name not in {p.input_name for p in profiles} and not all(
            isinstance(d, int) and d > 0 for d in image.shape):
        try:
            if args.scales is not None or args.flip:  # accuracy mode: a profile per scale
                if spec.input_size is None:
                    raise ValueError("--scales / --flip: an engine for accuracy mode needs --input-size HxW (the "
                                     "scale-1 size)")
                profiles += scale_profiles(spec.input_name, image.shape, args.batch or (1, 1, 1), spec.input_size,
                                           spec.input_layout, args.scales or (1.0,), args.flip)
            else:
                profiles.append(profile_from_batch(spec.input_name, image.shape, args.batch or (1, 1, 1),
                                                   spec.input_size, spec.input_layout))
        except ValueError as e:
            raise SpecError(str(e)) from None
    elif args.batch is not None and spec.input_name in {p.input_name for p in profiles}:
        raise CLIError("give the image input's profile once: -p or --batch, not both")
    try:
        options = BuildOptions(args.precision, tuple(profiles), args.workspace, calib)
    except ValueError as e:
        raise CLIError(str(e)) from None
    from ..formats.precision import check_build, onnx_quantization

    # The model-only rules (a Q/DQ model TensorRT cannot run, int8 with neither cache nor Q/DQ) fail
    # here, on any machine, before TensorRT is needed.
    check_build(options.precision, calib, onnx_quantization(model, str(args.input)), str(args.input))
    from ..backends import REGISTRY

    why = REGISTRY["tensorrt"].reason()
    if why is not None:
        from ..errors import BackendUnavailable

        raise BackendUnavailable(f"building a TensorRT engine needs TensorRT and a GPU here: {why}. Copy the .onnx "
                                 "(edgepose convert IN -o model.onnx) to the target device and build there")
    from ..backends.tensorrt import build_engine, trt

    plan = build_engine(onnx_bytes, options, where=str(args.input))
    from ..formats.detect import file_sha256

    build = {"tensorrt": trt.__version__, "source": Path(args.input).name,
             "source_sha256": hashlib.sha256(onnx_bytes).hexdigest(), "source_file_sha256": file_sha256(args.input),
             **options.to_dict()}
    side = write_engine(out, plan, spec.to_dict(), build)
    return {"engine": str(out), "sidecar": str(side), "bytes": len(plan)}


def run(args: argparse.Namespace) -> int:
    from ..formats import detect_format

    src, out = Path(args.input), Path(args.output)
    if not src.is_file():
        raise CLIError(f"{src}: model file not found" if not src.exists() else f"{src}: is not a file")
    if out.resolve() == src.resolve():
        raise CLIError(f"-o {out}: the output would overwrite the input")
    suffix = out.suffix.lower()
    if suffix not in (".onnx", ".etlt", *ENGINE_SUFFIXES):
        raise CLIError(f"-o {out}: unknown output type {suffix or '(none)'}; use .onnx, .etlt or .engine")
    inputs = model_inputs(args, args.input)  # the model, its JSON, --spec, --calib: never an output
    check_new_file(out, args.overwrite, "-o", inputs)
    if suffix in ENGINE_SUFFIXES:
        from ..formats.engine import sidecar_path

        check_new_file(sidecar_path(out), args.overwrite, "-o (its sidecar)", inputs)
    if args.calib is not None and not Path(args.calib).is_file():
        raise CLIError(f"--calib {args.calib}: file not found")
    if args.spec is not None and not Path(args.spec).is_file():
        raise CLIError(f"--spec {args.spec}: file not found")
    if suffix in ENGINE_SUFFIXES:
        args.precision = args.precision or "fp16"
        if args.calib is not None and args.precision != "int8":
            raise CLIError(f"--calib is only used with -t int8, not {args.precision}")
    elif args.precision not in (None, "fp16") or (args.precision == "fp16" and suffix != ".onnx"):
        raise CLIError(f"-t {args.precision}: only -o *.engine builds take a precision, and -o *.onnx takes -t fp16 "
                       "(INT8 ONNX models come from python -m tools.calibrate)")
    if suffix not in ENGINE_SUFFIXES:
        engine_only = [flag for flag, used in (("--calib", args.calib), ("-p/--profile", args.profile),
                                               ("--batch", args.batch), ("--workspace", args.workspace),
                                               ("--scales", args.scales), ("--flip", args.flip))
                       if used]
        if engine_only:
            raise CLIError(f"{', '.join(engine_only)}: only used when building an engine (-o *.engine)")
    fmt = detect_format(src)
    from ..spec import verify_model_sha256

    verify_model_sha256(src)  # a digest recorded in <model>.edgepose.json: a damaged model is not converted
    onnx_bytes, model = _load_onnx(args, fmt)
    if suffix == ".onnx":
        if fmt.value == "onnx" and args.precision is None:
            raise CLIError(f"{src} is already ONNX; nothing to convert (-t fp16 converts it to FP16)")
        what = "ONNX"
        if args.precision == "fp16":
            from ..formats.precision import onnx_quantization, to_fp16

            model = parse_onnx(model, str(src))
            if onnx_quantization(model, str(src)).quantized:
                raise CLIError(f"{src} is quantized (Q/DQ nodes): convert the FP32 model to FP16 instead")
            onnx_bytes, what = to_fp16(model, str(src)), "ONNX, FP16 with FP32 inputs and outputs"
        check_onnx_loadable(onnx_bytes, str(src))  # a damaged payload is refused, not written
        out.write_bytes(onnx_bytes)  # asked for: the user wants the plaintext model on disk
        print(f"edgepose convert: wrote {out} ({len(onnx_bytes)} bytes, {what})")
    elif suffix == ".etlt":
        from ..formats.etlt import write_etlt

        check_onnx_loadable(model, str(src))
        write_etlt(out, onnx_bytes, args.key)
        print(f"edgepose convert: wrote {out} (TAO .etlt, ONNX payload)")
    else:
        done = _engine(args, onnx_bytes, model, out)
        print(f"edgepose convert: wrote {done['engine']} ({done['bytes']} bytes) and {done['sidecar']}")
    return 0
