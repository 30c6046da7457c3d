"""Export a trained network with TAO BodyPoseNet's deployable interface.

    python -m tools.train.export runs/mini/last.pt model.onnx [--input-size 288x384] [--etlt model.etlt --key K]

The ONNX model is what NVIDIA's deployable BodyPoseNet is (``../shared/design/tao_bodyposenet.md``):

- input ``input_1:0``: float32 NHWC (B, 288, 384, 3), RGB ``x / 256 - 0.5`` (the batch is dynamic);
- output ``heatmap_out/BiasAdd:0``: (B, 36, 48, 19), stride 8;
- output ``conv2d_transpose_1/BiasAdd:0``: (B, 144, 192, 38), stride 2: like TAO's exporter, a fixed
  4x nearest-neighbour transposed convolution (one 4x4 kernel of ones per channel, stride 4) is
  appended to the last stage's stride-8 PAF.

So edgepose loads it exactly as it loads the NVIDIA model (the ``bodyposenet`` spec preset matches
by tensor names). ``--etlt`` also packs it into an encrypted ``.etlt`` with edgepose's writer.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from edgepose.errors import EdgePoseError, InputError

from .model import PAF_CHANNELS, STRIDE, ModelConfig, PoseNet

__all__ = ["Deployable", "INPUT_NAME", "HEATMAP_NAME", "PAF_NAME", "export_onnx", "load_checkpoint", "pack_etlt",
           "main"]

INPUT_NAME = "input_1:0"
HEATMAP_NAME = "heatmap_out/BiasAdd:0"
PAF_NAME = "conv2d_transpose_1/BiasAdd:0"
PAF_UPSAMPLE = 4  # stride 8 -> stride 2
OPSET = 13

PathLike = Union[str, Path]


class Deployable(nn.Module):
    """A :class:`PoseNet` behind BodyPoseNet's interface: NHWC in, the last stage's NHWC maps out,
    the PAF upsampled 4x (nearest neighbour, by a fixed transposed convolution)."""

    def __init__(self, net: PoseNet) -> None:
        super().__init__()
        self.net = net
        self.paf_upsample = nn.ConvTranspose2d(PAF_CHANNELS, PAF_CHANNELS, PAF_UPSAMPLE, stride=PAF_UPSAMPLE,
                                               groups=PAF_CHANNELS, bias=True)
        # Each stride-8 cell becomes a 4x4 block of equal stride-2 cells (centres average to the same point).
        with torch.no_grad():
            self.paf_upsample.weight.fill_(1.0)
            self.paf_upsample.bias.zero_()
        self.paf_upsample.requires_grad_(False)

    def forward(self, image_nhwc: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        heat, paf = self.net(image_nhwc.permute(0, 3, 1, 2))[-1]
        return heat.permute(0, 2, 3, 1), self.paf_upsample(paf).permute(0, 2, 3, 1)


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Tuple[PoseNet, Dict[str, Any]]:
    """The network stored in a training checkpoint (in eval mode) and the checkpoint dict.

    Raises:
        InputError: the file is missing or is not a checkpoint written by ``tools.train``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint not found: {p}")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise InputError(f"checkpoint {p}: cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise InputError(f"checkpoint {p}: not a tools.train checkpoint (no 'model' / 'model_config')")
    net = PoseNet(ModelConfig(**ckpt["model_config"]))
    net.load_state_dict(ckpt["model"])
    net.eval()
    return net, ckpt


def _size(value: Sequence[int]) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"input_size: expected (height, width), got {value!r}") from None
    if h < STRIDE or w < STRIDE or h % STRIDE or w % STRIDE:
        raise InputError(f"input_size: height and width must be positive multiples of {STRIDE}, got {(h, w)}")
    return h, w


def export_onnx(net: Union[PoseNet, PathLike], path: PathLike, *, input_size: Sequence[int] = (288, 384),
                dynamic_batch: bool = True, metadata: Optional[Dict[str, str]] = None) -> Path:
    """Write ``net`` (a PoseNet or a checkpoint path) as an ONNX model with BodyPoseNet's interface.

    Args:
        net: the network or a ``tools.train`` checkpoint.
        path: the ONNX file to write.
        input_size: (H, W) of ``input_1:0``, multiples of 8 (TAO: 288x384, 224x320, 320x448).
        dynamic_batch: a dynamic batch axis (TAO's 1..N); False fixes it to 1.
        metadata: extra ONNX ``metadata_props``.
    Returns:
        ``path``.
    """
    import onnx

    h, w = _size(input_size)
    if not isinstance(net, PoseNet):
        net, _ = load_checkpoint(net)
    model = Deployable(net).eval().cpu()
    dummy = torch.zeros(1, h, w, 3)
    out = Path(path)
    axes = {INPUT_NAME: {0: "batch"}, HEATMAP_NAME: {0: "batch"}, PAF_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        # The TorchScript-based exporter (no onnxscript dependency) announces its own deprecation.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(model, (dummy,), str(out), input_names=[INPUT_NAME], output_names=[HEATMAP_NAME, PAF_NAME],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    proto = onnx.load(str(out))
    props = {"producer": "edgepose tools.train", "model_config": json.dumps(net.config.to_dict()),
             "input_layout": "NHWC", "input_color_order": "RGB", **(metadata or {})}
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


def pack_etlt(onnx_path: PathLike, etlt_path: PathLike, key: str) -> Path:
    """Pack an ONNX model into an encrypted ``.etlt`` with ``key`` (edgepose's ``.etlt`` writer).

    Raises:
        EdgePoseError: this edgepose has no ``.etlt`` writer (``edgepose.formats.etlt``).
    """
    try:
        from edgepose.formats import etlt
    except ImportError:
        raise EdgePoseError("packing .etlt needs edgepose.formats.etlt (not in this edgepose) and "
                            "cryptography: pip install edgepose[etlt]") from None
    out = Path(etlt_path)
    etlt.write_etlt(out, Path(onnx_path), key)
    return out


def _parse_size(text: str) -> Tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 288x384, got {text!r}")
    return int(parts[0]), int(parts[1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m tools.train.export CHECKPOINT OUT.onnx``; a user error prints one line, returns 2."""
    p = argparse.ArgumentParser(prog="python -m tools.train.export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a tools.train checkpoint (.pt)")
    p.add_argument("onnx", type=Path, help="the ONNX file to write")
    p.add_argument("--input-size", type=_parse_size, default=(288, 384), metavar="HxW",
                   help="input height x width, multiples of 8 (default 288x384, TAO's)")
    p.add_argument("--etlt", type=Path, default=None, metavar="OUT", help="also pack the ONNX into this .etlt")
    p.add_argument("--key", default=None, help="the .etlt key (required with --etlt)")
    args = p.parse_args(argv)
    try:
        if args.etlt is not None and not args.key:
            raise InputError("--etlt needs --key")
        export_onnx(args.checkpoint, args.onnx, input_size=args.input_size)
        if args.etlt is not None:
            pack_etlt(args.onnx, args.etlt, args.key)
    except EdgePoseError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.onnx}" + (f" and {args.etlt}" if args.etlt else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
