"""Masked L2 loss with intermediate supervision (every stage is compared with the same targets).

OpenPose's loss: for each stage, the squared error of heatmaps and PAFs, weighted by the loss mask
(0 over crowds and unlabelled persons), summed over channels and cells and averaged over the batch.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch

__all__ = ["pose_loss"]


def _masked_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0.5 * sum(mask * (pred - target)^2) / batch; ``mask`` (B, 1, h, w) broadcasts over channels."""
    return 0.5 * ((pred - target).pow(2) * mask).sum() / pred.shape[0]


def pose_loss(outputs: List[Tuple[torch.Tensor, torch.Tensor]], heatmap: torch.Tensor, paf: torch.Tensor,
              mask: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
    """The total loss over all stages, and its parts (``stage<i>_heatmap`` / ``stage<i>_paf``) as floats.

    Args:
        outputs: per stage ``(heatmap (B, 19, h, w), paf (B, 38, h, w))``.
        heatmap, paf: the targets, same shapes; mask: (B, 1, h, w) in [0, 1].
    """
    if not outputs:
        raise ValueError("outputs: the network returned no stages")
    total = heatmap.new_zeros(())
    parts: Dict[str, float] = {}
    for i, (h, p) in enumerate(outputs):
        if h.shape != heatmap.shape or p.shape != paf.shape:
            raise ValueError(f"stage {i}: prediction shapes {tuple(h.shape)} / {tuple(p.shape)} do not match the "
                             f"targets {tuple(heatmap.shape)} / {tuple(paf.shape)}")
        lh, lp = _masked_l2(h, heatmap, mask), _masked_l2(p, paf, mask)
        parts[f"stage{i}_heatmap"] = float(lh.detach())
        parts[f"stage{i}_paf"] = float(lp.detach())
        total = total + lh + lp
    return total, parts
