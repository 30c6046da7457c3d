"""Training samples from COCO person keypoints: augmentation, loss masks and rendered targets.

One sample is a crop of ``input_size`` = (H, W) cut from an image by one affine map: the image is
first brought to the scale it would have in the deployed network's letterbox (``deploy_size``,
BodyPoseNet's 288 x 384), then scaled by a random factor, rotated, translated so a random person (or
the image centre) lands near the crop centre, and mirrored half of the time. A horizontal flip
swaps left and right keypoints (``Topology.flip_pairs``), so the PAFs rendered from the flipped
keypoints are the mirrored fields with their x component negated and left / right limbs swapped.

Keypoints come from :func:`edgepose.coco.ground_truth_poses` (COCO-17 -> BodyPoseNet-18, the neck
synthesised from the shoulders). Targets are rendered at stride 8 by edgepose's C++ renderer
(:func:`edgepose.render.render_heatmaps` / :func:`~edgepose.render.render_pafs`). The loss mask is 0
over crowd regions and over persons that are annotated without keypoints (the network may see
them, but nothing tells it where their joints are), 1 elsewhere, padding included: padding is known
to hold nobody.

The image tensor is what the deployed model takes: RGB, ``x / 256 - 0.5``, padding 128 (0 after
normalisation), the BodyPoseNet spec (:meth:`edgepose.spec.ModelSpec.bodyposenet`).

Randomness is a function of ``(seed, epoch, index)`` only, so a resumed run sees the same samples
as an uninterrupted one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from edgepose import coco
from edgepose.errors import InputError
from edgepose.render import render_heatmaps, render_pafs
from edgepose.spec import ModelSpec
from edgepose.topology import BODYPOSENET, Topology

__all__ = ["Augment", "CocoPoses", "flip_keypoints", "normalise"]

STRIDE = 8
PAD_PIXEL = 128.0  # the letterbox padding of BodyPoseNet's spec, in pixel units (0 after normalising)


@dataclass(frozen=True)
class Augment:
    """Random augmentation ranges (all off: :meth:`none`).

    Attributes:
        scale: (min, max) factor on top of the deploy letterbox scale.
        rotate: maximum rotation in degrees (uniform in [-rotate, rotate]).
        shift: maximum jitter of the crop centre, as a fraction of the crop size.
        flip: probability of a horizontal flip.
        person_centre: probability of centring the crop on a random labelled person.
    """

    scale: Tuple[float, float] = (0.7, 1.3)
    rotate: float = 20.0
    shift: float = 0.2
    flip: float = 0.5
    person_centre: float = 0.8

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (0 < lo <= hi <= 8):
            raise InputError(f"augment scale: expected 0 < min <= max <= 8, got {self.scale}")
        if not (0 <= self.rotate <= 180 and 0 <= self.shift <= 1 and 0 <= self.flip <= 1
                and 0 <= self.person_centre <= 1):
            raise InputError(f"augment: a range is out of bounds: {self}")

    @classmethod
    def none(cls) -> Augment:
        """No augmentation: the whole image letterboxed as at deployment (validation, tests)."""
        return cls(scale=(1.0, 1.0), rotate=0.0, shift=0.0, flip=0.0, person_centre=0.0)


def normalise(image_bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, H, W) float32 RGB ``x / 256 - 0.5`` (BodyPoseNet's input)."""
    spec = ModelSpec.bodyposenet()
    rgb = image_bgr[:, :, ::-1].astype(np.float32)
    return np.ascontiguousarray((rgb * spec.scale + spec.offset).transpose(2, 0, 1))


def flip_keypoints(keypoints: np.ndarray, width: int, topology: Topology = BODYPOSENET) -> np.ndarray:
    """Keypoints (M, N, 3) of an image ``width`` pixels wide, mirrored: x -> width - 1 - x (pixel
    centres at integers) and left / right swapped. Missing keypoints stay (0, 0, 0)."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    seen = out[:, :, 2] > 0
    out[:, :, 0] = np.where(seen, width - 1 - out[:, :, 0], 0.0)
    for a, b in topology.flip_pairs:
        out[:, [a, b]] = out[:, [b, a]]
    return out


def _ignore_mask(annotations: List[Dict[str, Any]], height: int, width: int) -> np.ndarray:
    """(H, W) uint8, 0 where the loss is ignored: crowd regions and persons without keypoints."""
    mask = np.ones((height, width), np.uint8)
    ignored = [a for a in annotations
               if a.get("iscrowd", 0) or not any(v > 0 for v in (a.get("keypoints") or [])[2::3])]
    for ann in ignored:
        seg = ann.get("segmentation")
        region = None
        if seg:
            try:
                from pycocotools import mask as mask_utils
            except ImportError:  # pragma: no cover - pycocotools is in the test and coco extras
                mask_utils = None
            if mask_utils is not None:
                with warnings.catch_warnings():
                    # pycocotools' Cython code trips numpy 2's __array__(copy=) deprecation.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    rles = mask_utils.frPyObjects(seg, height, width)
                    rle = mask_utils.merge(rles) if isinstance(rles, list) else rles
                    region = mask_utils.decode(rle).astype(bool)
        if region is None and ann.get("bbox"):
            x, y, w, h = (float(v) for v in ann["bbox"])
            region = np.zeros((height, width), bool)
            region[max(0, int(y)):int(math.ceil(y + h)), max(0, int(x)):int(math.ceil(x + w))] = True
        if region is not None:
            mask[region] = 0
    return mask


class CocoPoses:
    """COCO person-keypoint images as training samples (a map-style dataset for torch's DataLoader).

    Args:
        annotations: a COCO person-keypoints json (path or dict).
        images: the folder holding the images.
        input_size: (H, W) of a sample, multiples of 8.
        deploy_size: (H, W) of the deployed network's input; sets the base scale of an image.
        augment: random augmentation (:class:`Augment`; :meth:`Augment.none` for none).
        sigma: heatmap Gaussian sigma in cells; paf_width: PAF half-width in cells.
        seed: base of the per-sample random generator.
        image_ids: only these images (default: every image of the annotations).
        people_only: leave out images without a labelled (non-crowd, with keypoints) person.
        limit: only the first ``limit`` images of the annotation file (before ``people_only``; the
            images ``edgepose eval --limit`` scores).

    ``dataset[i]`` is a dict of numpy arrays: ``image`` (3, H, W) float32, ``heatmap`` (19, H/8,
    W/8), ``paf`` (38, H/8, W/8), ``mask`` (1, H/8, W/8) in [0, 1]. Set :attr:`epoch` to change
    the augmentation draw.
    """

    def __init__(self, annotations: Union[str, Path, Dict[str, Any]], images: Union[str, Path], *,
                 input_size: Tuple[int, int] = (288, 384), deploy_size: Tuple[int, int] = (288, 384),
                 augment: Optional[Augment] = None, sigma: float = 1.0, paf_width: float = 1.0, seed: int = 0,
                 image_ids: Optional[Sequence[int]] = None, people_only: bool = False,
                 limit: Optional[int] = None) -> None:
        for name, size in (("input_size", input_size), ("deploy_size", deploy_size)):
            if len(size) != 2 or any(int(v) < 8 or int(v) % STRIDE for v in size):
                raise InputError(f"{name}: expected (height, width), multiples of {STRIDE}, got {size}")
        self.data = coco.load_annotations(annotations)
        self.folder = Path(images)
        if not self.folder.is_dir():
            raise InputError(f"images: folder not found: {self.folder}")
        entries = self.data["images"]
        if limit is not None:
            if limit < 1:
                raise InputError(f"limit: expected a positive number of images, got {limit}")
            entries = entries[:limit]
        if image_ids is not None:
            wanted = {int(i) for i in image_ids}
            entries = [e for e in entries if e["id"] in wanted]
            if len(entries) != len(wanted):
                unknown = sorted(wanted - {e["id"] for e in entries})[:5]
                raise InputError(f"image_ids: {unknown} are not in the annotations")
        if people_only:
            entries = [e for e in entries if len(coco.ground_truth_poses(self.data, e["id"]))]
        if not entries:
            raise InputError("annotations: no images to train on")
        missing = [e["file_name"] for e in entries if not (self.folder / e["file_name"]).is_file()]
        if missing:
            raise InputError(f"images: {len(missing)} of {len(entries)} annotated images missing in "
                             f"{self.folder} (first: {missing[0]})")
        self.entries = list(entries)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.deploy_size = (int(deploy_size[0]), int(deploy_size[1]))
        self.augment = augment if augment is not None else Augment()
        self.sigma, self.paf_width, self.seed = float(sigma), float(paf_width), int(seed)
        self.epoch = 0
        by_image: Dict[int, List[Dict[str, Any]]] = {}
        for ann in self.data["annotations"]:
            if ann.get("category_id") == coco.PERSON_CATEGORY_ID:
                by_image.setdefault(ann["image_id"], []).append(ann)
        self._anns = by_image
        self._keypoints = {e["id"]: coco.ground_truth_poses(self.data, e["id"]).keypoints for e in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def keypoints(self, index: int) -> np.ndarray:
        """The labelled persons of image ``index`` (M, 18, 3), in image pixels."""
        return self._keypoints[self.entries[index]["id"]]

    def _affine(self, rng: np.random.Generator, shape: Tuple[int, int], kps: np.ndarray) -> Tuple[np.ndarray, bool]:
        """The 2x3 map image pixels -> sample pixels (pixel centres at integers) and the flip flag."""
        aug = self.augment
        h, w = shape
        out_h, out_w = self.input_size
        base = min(self.deploy_size[0] / h, self.deploy_size[1] / w)
        scale = base * rng.uniform(*aug.scale)
        angle = math.radians(rng.uniform(-aug.rotate, aug.rotate))
        seen = kps[:, :, 2] > 0
        people = [p for p in range(len(kps)) if seen[p].any()]
        if people and rng.uniform() < aug.person_centre:
            p = people[int(rng.integers(len(people)))]
            centre = kps[p, seen[p], :2].mean(axis=0)
        else:
            centre = np.array([(w - 1) / 2, (h - 1) / 2])
        jitter = rng.uniform(-aug.shift, aug.shift, size=2) * np.array([out_w, out_h])
        flip = bool(rng.uniform() < aug.flip)
        c, s = math.cos(angle) * scale, math.sin(angle) * scale
        rot = np.array([[c, -s], [s, c]])
        target = np.array([(out_w - 1) / 2, (out_h - 1) / 2]) + jitter
        m = np.zeros((2, 3))
        m[:, :2] = rot
        m[:, 2] = target - rot @ centre
        return m, flip

    def sample(self, index: int, epoch: Optional[int] = None) -> Dict[str, np.ndarray]:
        """Sample ``index`` as drawn in ``epoch`` (default :attr:`epoch`)."""
        entry = self.entries[index]
        path = self.folder / entry["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"images: cannot decode {path}")
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch, index])
        kps = self.keypoints(index)
        m, flip = self._affine(rng, image.shape[:2], kps)
        out_h, out_w = self.input_size
        crop = cv2.warpAffine(image, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(PAD_PIXEL,) * 3)
        ignore = _ignore_mask(self._anns.get(entry["id"], []), image.shape[0], image.shape[1])
        # Outside the image is padding, which holds nobody: a valid negative (border 1).
        mask = cv2.warpAffine(ignore, m, (out_w, out_h), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=1)
        moved = kps.copy()
        if len(kps):
            xy1 = np.concatenate([kps[:, :, :2], np.ones(kps.shape[:2] + (1,), np.float32)], axis=2)
            moved[:, :, :2] = xy1 @ m.T.astype(np.float32)
            moved[kps[:, :, 2] <= 0] = 0.0
        if flip:
            crop = np.ascontiguousarray(crop[:, ::-1])
            mask = np.ascontiguousarray(mask[:, ::-1])
            moved = flip_keypoints(moved, out_w)
        return self.render(crop, moved, mask)

    def render(self, crop: np.ndarray, keypoints: np.ndarray, mask: np.ndarray) -> Dict[str, np.ndarray]:
        """A sample from a (H, W, 3) uint8 BGR crop, its keypoints (M, 18, 3) in crop pixels and its
        (H, W) 0 / 1 loss mask."""
        out_h, out_w = crop.shape[:2]
        cells = (out_h // STRIDE, out_w // STRIDE)
        kps = keypoints if len(keypoints) else np.zeros((0, BODYPOSENET.num_keypoints, 3), np.float32)
        heat = render_heatmaps(kps, shape=cells, stride=STRIDE, sigma=self.sigma, layout="NCHW")
        paf = render_pafs(kps, shape=cells, stride=STRIDE, width=self.paf_width, layout="NCHW")
        # The fraction of each cell's pixels that count (area average of the pixel mask).
        cell_mask = cv2.resize(mask.astype(np.float32), (cells[1], cells[0]), interpolation=cv2.INTER_AREA)
        return {
            "image": normalise(crop),
            "heatmap": heat,
            "paf": paf,
            "mask": cell_mask[None].astype(np.float32),
        }

    def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
        if not (0 <= index < len(self)):
            raise IndexError(f"sample {index} of {len(self)}")
        return self.sample(index)
