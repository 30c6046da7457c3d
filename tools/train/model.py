"""A BodyPoseNet-style network: a backbone to stride 8, an initial stage and N refinement stages.

Every stage predicts C = 19 heatmap channels (18 keypoints + background) and 2K = 38 PAF channels
at stride 8 (Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part Affinity Fields",
CVPR 2017; TAO BodyPoseNet follows the same plan). Each refinement stage sees the backbone features
and the previous stage's maps, and every stage is supervised (intermediate supervision), so
``forward`` returns all of them while training; deployment reads the last one.

Backbones:
- ``vgg``: the first ten 3x3 convolutions of VGG-19 (three 2x2 pools to stride 8), as OpenPose and
  BodyPoseNet use, then two convolutions down to the stage width.
- ``mobilenet``: depthwise-separable convolutions (MobileNet-v1 style, as lightweight OpenPose),
  the last block dilated so the receptive field grows without a further stride.
``width`` scales the backbone's channels (0.25 makes a network small enough to train on a CPU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from edgepose.topology import BODYPOSENET

__all__ = ["BACKBONES", "ModelConfig", "PoseNet", "STRIDE"]

BACKBONES = ("vgg", "mobilenet")
STRIDE = 8
"""Input pixels per cell of every stage's maps."""

HEAT_CHANNELS = BODYPOSENET.heatmap_channels  # 19
PAF_CHANNELS = BODYPOSENET.paf_channel_count  # 38


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape; stored in checkpoints so a checkpoint rebuilds its own network.

    Attributes:
        backbone: ``vgg`` or ``mobilenet``.
        width: backbone channel multiplier (1.0: VGG-19's 64..512, MobileNet's 32..512).
        stage_channels: channels inside the stages.
        refinement_stages: N, the number of refinement stages after the initial one.
    """

    backbone: str = "mobilenet"
    width: float = 1.0
    stage_channels: int = 128
    refinement_stages: int = 1

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: expected one of {BACKBONES}, got {self.backbone!r}")
        if not (0 < self.width <= 4):
            raise ValueError(f"width: expected a multiplier in (0, 4], got {self.width}")
        if not (8 <= self.stage_channels <= 1024):
            raise ValueError(f"stage_channels: expected 8..1024, got {self.stage_channels}")
        if not (0 <= self.refinement_stages <= 8):
            raise ValueError(f"refinement_stages: expected 0..8, got {self.refinement_stages}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _ch(c: int, width: float) -> int:
    """Channels scaled by ``width``, rounded to a multiple of 8 (at least 8)."""
    return max(8, int(round(c * width / 8)) * 8)


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _dw_sep(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1 (MobileNet)."""
    return nn.Sequential(_conv(cin, cin, 3, stride, dilation, groups=cin), _conv(cin, cout, 1))


def _vgg(width: float, out: int) -> Tuple[nn.Module, int]:
    c64, c128, c256, c512 = (_ch(c, width) for c in (64, 128, 256, 512))
    layers = [
        _conv(3, c64), _conv(c64, c64), nn.MaxPool2d(2, 2),
        _conv(c64, c128), _conv(c128, c128), nn.MaxPool2d(2, 2),
        _conv(c128, c256), _conv(c256, c256), _conv(c256, c256), _conv(c256, c256), nn.MaxPool2d(2, 2),
        _conv(c256, c512), _conv(c512, c512),
        # OpenPose's "CPM" adapter down to the stage width.
        _conv(c512, c256), _conv(c256, out),
    ]  # fmt: skip
    return nn.Sequential(*layers), out


def _mobilenet(width: float, out: int) -> Tuple[nn.Module, int]:
    c = [_ch(v, width) for v in (32, 64, 128, 256, 512)]
    layers = [
        _conv(3, c[0], stride=2),
        _dw_sep(c[0], c[1]),
        _dw_sep(c[1], c[2], stride=2), _dw_sep(c[2], c[2]),
        _dw_sep(c[2], c[3], stride=2), _dw_sep(c[3], c[3]),
        _dw_sep(c[3], c[4]), _dw_sep(c[4], c[4], dilation=2), _dw_sep(c[4], c[4]),
        _conv(c[4], out, 1),
    ]  # fmt: skip
    return nn.Sequential(*layers), out


class _Stage(nn.Module):
    """Convolutions on (features [+ previous maps]) and two 1x1 heads: heatmaps and PAFs."""

    def __init__(self, cin: int, channels: int, blocks: int, dilation: int) -> None:
        super().__init__()
        body: List[nn.Module] = [_conv(cin, channels, 1)]
        # Dilated 3x3 convolutions widen the receptive field cheaply: limbs span many cells.
        body += [_conv(channels, channels, 3, dilation=dilation if i % 2 else 1) for i in range(blocks)]
        self.body = nn.Sequential(*body)
        self.heat = nn.Sequential(_conv(channels, channels, 1), nn.Conv2d(channels, HEAT_CHANNELS, 1))
        self.paf = nn.Sequential(_conv(channels, channels, 1), nn.Conv2d(channels, PAF_CHANNELS, 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        y = self.body(x)
        return self.heat(y), self.paf(y)


class PoseNet(nn.Module):
    """Backbone + initial stage + ``refinement_stages`` refinement stages (NCHW in and out).

    ``forward(x)`` with ``x`` of shape (B, 3, H, W), normalised RGB (x / 256 - 0.5), H and W
    multiples of 8, returns one ``(heatmap (B, 19, H/8, W/8), paf (B, 38, H/8, W/8))`` pair per
    stage, the last one being the network's answer.
    """

    def __init__(self, config: Optional[ModelConfig] = None) -> None:
        super().__init__()
        config = config if config is not None else ModelConfig()
        self.config = config
        c = config.stage_channels
        build = _vgg if config.backbone == "vgg" else _mobilenet
        self.backbone, feat = build(config.width, c)
        self.initial = _Stage(feat, c, blocks=3, dilation=1)
        maps = HEAT_CHANNELS + PAF_CHANNELS
        self.refinement = nn.ModuleList(
            _Stage(feat + maps, c, blocks=4, dilation=2) for _ in range(config.refinement_stages)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Heads start near 0: empty maps are the right first guess for most cells.
        for stage in [self.initial, *self.refinement]:
            for head in (stage.heat[-1], stage.paf[-1]):
                nn.init.normal_(head.weight, std=1e-3)

    def forward(self, x: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        features = self.backbone(x)
        outputs = [self.initial(features)]
        for stage in self.refinement:
            heat, paf = outputs[-1]
            outputs.append(stage(torch.cat([features, heat, paf], dim=1)))
        return outputs
