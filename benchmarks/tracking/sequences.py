"""Labelled multi-person pose video made from real COCO material.

No labelled pose video is available to the project, so the tracking benchmark builds its own:
persons are cut out of COCO images along their segmentation polygons, pasted onto real COCO images
that hold no person, and moved along smooth paths that cross. Each person keeps a depth in [0, 1]
(0 far, 1 near) that varies slowly; depth sets the size (nearer is bigger), the height of the feet
in the frame (nearer is lower) and the z-order (nearer is drawn over farther). The COCO keypoints
go through the same affine map as the pixels (scale, translation, optional mirror with left/right
swapped); a keypoint outside the frame or covered by a nearer person becomes unlabelled (v = 0).

Everything comes from a seed: sequence ``i`` of seed ``s`` draws from ``np.random.default_rng([s, i])``,
so a sequence does not depend on how many others are made. The source images and annotations are
arguments; other sequences "made the same way from other images" need only another COCO folder.

Ground truth per frame and person: ``id`` (1..n in a sequence), 17 COCO keypoints ``[x, y, v]`` in
frame pixels, ``box`` (the person's full COCO box mapped and clipped to the frame, xyxy), ``area``
(the COCO segment area times the scale squared, for OKS), ``visible_keypoints`` and ``ignore``
(fewer than ``min_visible`` labelled keypoints in view: such a person neither counts as missed nor
makes a detection on it a false positive). A person with no pixel in the frame is left out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

GENERATOR_VERSION = 1

# COCO-17 order: left <-> right swapped by a mirror image.
COCO17_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)


@dataclass(frozen=True)
class SequenceConfig:
    """How sequences are made. Lengths are relative to the frame size where it makes sense.

    Attributes:
        frames: frames per sequence.
        width, height: frame size in pixels.
        fps: frame rate of the video (the timestamps are ``frame / fps``).
        people: inclusive range of persons per sequence (drawn uniformly).
        min_keypoints: a source person needs at least this many labelled COCO keypoints ...
        min_area: ... and this segment area (source pixels), is not a crowd, has a polygon
            segmentation and a box that does not touch its image's border (no cut-off halves).
        min_visible: labelled keypoints in view for a ground-truth person to count (else ``ignore``).
        height_range: the person's box height as a fraction of the frame height, far .. near.
        feet_range: the bottom of the person's box as a fraction of the frame height, far .. near.
        speed_range: walking speed in frame widths per second.
        depth_swing: the largest change of depth along a path (people walk towards / away).
        spread: the middles of the paths lie in this central fraction of the frame width.
        mirror: mirror half of the persons (drawn per person) with left/right keypoints swapped.
    """

    frames: int = 90
    width: int = 640
    height: int = 480
    fps: float = 30.0
    people: Tuple[int, int] = (3, 4)
    min_keypoints: int = 10
    min_area: float = 4000.0
    min_visible: int = 5
    height_range: Tuple[float, float] = (0.30, 0.62)
    feet_range: Tuple[float, float] = (0.62, 0.97)
    speed_range: Tuple[float, float] = (0.08, 0.24)
    depth_swing: float = 0.3
    spread: float = 0.4
    mirror: bool = True

    def __post_init__(self) -> None:
        if self.frames < 1 or self.width < 32 or self.height < 32 or self.fps <= 0:
            raise ValueError(f"SequenceConfig: bad frames/size/fps {self.frames}, {self.width}x{self.height}, "
                             f"{self.fps}")
        lo, hi = self.people
        if not 1 <= lo <= hi:
            raise ValueError(f"SequenceConfig.people: expected 1 <= lo <= hi, got {self.people}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SourcePerson:
    """One COCO person that may be pasted: its annotation and image file."""

    annotation_id: int
    image_id: int
    image_path: Path
    bbox: Tuple[float, float, float, float]  # x, y, w, h in the source image
    polygons: Tuple[Tuple[float, ...], ...]
    keypoints: np.ndarray = field(repr=False)  # (17, 3) x, y, v in the source image
    area: float = 0.0


@dataclass(frozen=True)
class Sources:
    """The persons and the person-free backgrounds of one COCO folder."""

    persons: Tuple[SourcePerson, ...]
    backgrounds: Tuple[Tuple[int, Path], ...]
    annotations: Path
    digest: str  # of the annotation file, for cache keys


def load_sources(images: Path, annotations: Path, config: SequenceConfig = SequenceConfig()) -> Sources:
    """The eligible persons (see :class:`SequenceConfig`) and the backgrounds (images of the annotation
    file with no person annotation at all) whose files exist in ``images``."""
    images, annotations = Path(images), Path(annotations)
    raw = annotations.read_bytes()
    data = json.loads(raw)
    person_cats = {c["id"] for c in data.get("categories", []) if c.get("name") == "person"} or {1}
    files = {im["id"]: (images / im["file_name"], int(im["width"]), int(im["height"])) for im in data["images"]}
    with_person = set()
    persons = []
    for a in data["annotations"]:
        if a.get("category_id") not in person_cats:
            continue
        with_person.add(a["image_id"])
        seg = a.get("segmentation")
        if a.get("iscrowd") or not isinstance(seg, list) or not seg:
            continue
        if a.get("num_keypoints", 0) < config.min_keypoints or a.get("area", 0) < config.min_area:
            continue
        path, w, h = files[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        if x < 2 or y < 2 or x + bw > w - 2 or y + bh > h - 2 or not path.exists():
            continue
        kp = np.asarray(a["keypoints"], np.float32).reshape(17, 3)
        persons.append(SourcePerson(int(a["id"]), int(a["image_id"]), path, (x, y, bw, bh),
                                    tuple(tuple(p) for p in seg if len(p) >= 6), kp, float(a["area"])))
    persons.sort(key=lambda p: p.annotation_id)
    backgrounds = tuple(sorted((iid, p) for iid, (p, _, _) in files.items() if iid not in with_person and p.exists()))
    if not persons or not backgrounds:
        raise ValueError(f"{annotations}: {len(persons)} eligible persons and {len(backgrounds)} person-free images "
                         f"with files in {images}; need at least one of each")
    return Sources(tuple(persons), backgrounds, annotations, hashlib.sha1(raw).hexdigest())


@dataclass(frozen=True)
class PersonPath:
    """The path of one pasted person over a sequence."""

    id: int
    person: SourcePerson
    mirror: bool
    x_mid: float  # box centre x at the middle frame, px
    velocity: float  # px per frame (sign = direction)
    wobble: Tuple[float, float, float]  # amplitude px, period frames, phase
    depth: Tuple[float, float, float, float]  # base, swing, period frames, phase
    y_offset: float  # px, added to the feet height

    def at(self, t: int, frames: int) -> Tuple[float, float]:
        """(box centre x px, depth in [0, 1]) at frame ``t``."""
        amp, period, phase = self.wobble
        x = self.x_mid + self.velocity * (t - (frames - 1) / 2) + amp * np.sin(2 * np.pi * t / period + phase)
        base, swing, dperiod, dphase = self.depth
        d = base + swing * np.sin(2 * np.pi * t / dperiod + dphase)
        return float(x), float(np.clip(d, 0.0, 1.0))


@dataclass(frozen=True)
class SequencePlan:
    """Everything random about one sequence, drawn from ``(seed, index)``."""

    name: str
    seed: int
    index: int
    background: Tuple[int, Path]
    crop: Tuple[float, float]  # where the background is cropped, fractions of the spare width / height
    paths: Tuple[PersonPath, ...]


def plan_sequence(sources: Sources, config: SequenceConfig, seed: int, index: int) -> SequencePlan:
    """Draw background, persons and paths of sequence ``index``."""
    rng = np.random.default_rng([seed, index])
    W, H = config.width, config.height
    bg = sources.backgrounds[int(rng.integers(len(sources.backgrounds)))]
    crop = (float(rng.random()), float(rng.random()))
    lo, hi = config.people
    n = min(int(rng.integers(lo, hi + 1)), len(sources.persons))
    chosen = rng.choice(len(sources.persons), size=n, replace=False)
    # Directions alternate so that paths cross; depths are stratified so that z-order varies.
    dirs = np.array([1.0 if k % 2 == 0 else -1.0 for k in range(n)])
    rng.shuffle(dirs)
    depth_order = rng.permutation(n)
    paths = []
    for k in range(n):
        base = (depth_order[k] + rng.uniform(0.15, 0.85)) / n
        swing = rng.uniform(0.0, config.depth_swing / 2)
        base = float(np.clip(base, swing, 1.0 - swing))
        speed = rng.uniform(*config.speed_range) * W / config.fps
        paths.append(PersonPath(
            id=k + 1,
            person=sources.persons[int(chosen[k])],
            mirror=bool(config.mirror and rng.random() < 0.5),
            x_mid=float(rng.uniform(0.5 - config.spread / 2, 0.5 + config.spread / 2) * W),
            velocity=float(dirs[k] * speed),
            wobble=(float(rng.uniform(0.0, 0.04) * W), float(rng.uniform(1.5, 5.0) * config.fps),
                    float(rng.uniform(0, 2 * np.pi))),
            depth=(base, float(swing), float(rng.uniform(2.0, 6.0) * config.fps), float(rng.uniform(0, 2 * np.pi))),
            y_offset=float(rng.uniform(-0.02, 0.02) * H),
        ))
    return SequencePlan(f"seq_{seed:03d}_{index:03d}", seed, index, bg, crop, tuple(paths))


@dataclass
class _Cutout:
    image: np.ndarray  # (h, w, 3) uint8 crop of the source image
    alpha: np.ndarray  # (h, w) float32 in [0, 1], the polygons filled
    keypoints: np.ndarray  # (17, 3) in crop coordinates
    bbox: Tuple[float, float, float, float]  # in crop coordinates
    area: float
    height: float  # the standing height the person would have (source px), for its scale
    full_body: bool  # ankles labelled


# Shoulder midpoint to hip midpoint is about 0.3 of a standing adult's height.
_TORSO_FRACTION = 0.3


def _standing_height(kp: np.ndarray, box_h: float) -> float:
    """The box height, or the height implied by the torso when that is larger (seated, cropped)."""
    lab = kp[:, 2] > 0
    sh, hip = [i for i in (5, 6) if lab[i]], [i for i in (11, 12) if lab[i]]
    if not sh or not hip:
        return float(box_h)
    torso = float(np.linalg.norm(kp[sh, :2].mean(0) - kp[hip, :2].mean(0)))
    return max(float(box_h), torso / _TORSO_FRACTION)


def _cutout(person: SourcePerson) -> _Cutout:
    import cv2

    img = cv2.imread(str(person.image_path))
    if img is None:
        raise ValueError(f"{person.image_path}: cannot read the image")
    x, y, w, h = person.bbox
    x0, y0 = max(int(np.floor(x)) - 2, 0), max(int(np.floor(y)) - 2, 0)
    x1, y1 = min(int(np.ceil(x + w)) + 3, img.shape[1]), min(int(np.ceil(y + h)) + 3, img.shape[0])
    crop = np.ascontiguousarray(img[y0:y1, x0:x1])
    mask = np.zeros(crop.shape[:2], np.uint8)
    polys = [np.round((np.asarray(p, np.float64).reshape(-1, 2) - (x0, y0)) * 8).astype(np.int32)
             for p in person.polygons]
    cv2.fillPoly(mask, polys, 255, lineType=cv2.LINE_AA, shift=3)
    kp = person.keypoints.copy()
    lab = kp[:, 2] > 0
    kp[lab, 0] -= x0
    kp[lab, 1] -= y0
    return _Cutout(crop, mask.astype(np.float32) / 255.0, kp, (x - x0, y - y0, w, h), person.area,
                   _standing_height(person.keypoints, h), bool(lab[15] or lab[16]))


def _background(plan: SequencePlan, config: SequenceConfig) -> np.ndarray:
    import cv2

    img = cv2.imread(str(plan.background[1]))
    if img is None:
        raise ValueError(f"{plan.background[1]}: cannot read the image")
    W, H = config.width, config.height
    s = max(W / img.shape[1], H / img.shape[0])
    rw, rh = max(W, int(np.ceil(img.shape[1] * s))), max(H, int(np.ceil(img.shape[0] * s)))
    img = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    ox, oy = int(plan.crop[0] * (rw - W)), int(plan.crop[1] * (rh - H))
    return np.ascontiguousarray(img[oy:oy + H, ox:ox + W])


def _affine(path: PersonPath, cut: _Cutout, t: int, config: SequenceConfig) -> Tuple[np.ndarray, float, float]:
    """(2x3 map crop -> frame, scale, depth) of ``path`` at frame ``t``."""
    W, H = config.width, config.height
    xc, d = path.at(t, config.frames)
    bx, by, bw, bh = cut.bbox
    target_h = H * (config.height_range[0] + (config.height_range[1] - config.height_range[0]) * d)
    s = target_h / cut.height
    s = min(s, 0.6 * W / bw)  # a wide (lying, group-hugging) person stays within 60% of the width
    feet = H * (config.feet_range[0] + (config.feet_range[1] - config.feet_range[0]) * d) + path.y_offset
    sx = -s if path.mirror else s
    cx = bx + bw / 2
    # A person with labelled ankles stands on the ground (box bottom at the feet line); one without
    # (an upper body) has the top of the box where a standing person's head would be.
    ty = feet - s * (by + bh) if cut.full_body else feet - s * cut.height - s * by
    m = np.array([[sx, 0.0, xc - sx * cx], [0.0, s, ty]], np.float64)
    return m, s, d


Frame = Tuple[np.ndarray, Dict[str, Any], Dict[int, np.ndarray]]


def render(plan: SequencePlan, config: SequenceConfig) -> Iterator[Frame]:
    """Frames of ``plan``: ``(image (H, W, 3) uint8 BGR, ground truth of the frame, {id: visible mask})``."""
    import cv2

    W, H = config.width, config.height
    bg = _background(plan, config).astype(np.float32)
    cuts = {p.id: _cutout(p.person) for p in plan.paths}
    flip = np.asarray(COCO17_FLIP)
    for t in range(config.frames):
        placed = []
        for p in plan.paths:
            m, s, d = _affine(p, cuts[p.id], t, config)
            placed.append((d, p, m, s))
        placed.sort(key=lambda e: (e[0], e[1].id))  # far first
        frame = bg.copy()
        alphas = []
        for _, p, m, _ in placed:
            cut = cuts[p.id]
            own = np.zeros((H, W), bool)
            # Warp into the part of the frame the crop covers only (same samples, less work).
            ch, cw = cut.alpha.shape
            corners = np.array([[0, 0], [cw, 0], [0, ch], [cw, ch]], np.float64) @ m[:, :2].T + m[:, 2]
            x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
            x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, (W, H))
            if x1 > x0 and y1 > y0:
                mm = m.copy()
                mm[:, 2] -= (x0, y0)
                size = (int(x1 - x0), int(y1 - y0))
                a = cv2.warpAffine(cut.alpha, mm, size, flags=cv2.INTER_LINEAR, borderValue=0.0)[:, :, None]
                rgb = cv2.warpAffine(cut.image, mm, size, flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
                region = frame[y0:y1, x0:x1]
                region *= 1.0 - a
                region += rgb.astype(np.float32) * a
                own[y0:y1, x0:x1] = a[:, :, 0] >= 0.5
            alphas.append(own)
        image = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        # Nearer persons cover farther ones: visible = own mask minus the union of those drawn later.
        nearer = np.zeros((H, W), bool)
        persons, masks = [], {}
        for (d, p, m, s), own in zip(reversed(placed), reversed(alphas)):
            cut = cuts[p.id]
            vis = own & ~nearer
            kp = np.zeros((17, 3), np.float64)
            lab = cut.keypoints[:, 2] > 0
            xy = cut.keypoints[:, :2].astype(np.float64) @ m[:, :2].T + m[:, 2]
            kp[lab, :2] = xy[lab]
            kp[lab, 2] = cut.keypoints[lab, 2]
            if p.mirror:
                kp = kp[flip]
            lab = kp[:, 2] > 0
            inside = lab & (kp[:, 0] >= 0) & (kp[:, 0] <= W - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= H - 1)
            xi = np.clip(np.rint(kp[:, 0]).astype(int), 0, W - 1)
            yi = np.clip(np.rint(kp[:, 1]).astype(int), 0, H - 1)
            covered = nearer[yi, xi]
            keep = inside & ~covered
            kp[~keep] = 0.0
            nearer |= own
            if not vis.any():
                continue
            bx, by, bw, bh = cut.bbox
            corners = np.array([[bx, by], [bx + bw, by + bh]]) @ m[:, :2].T + m[:, 2]
            x1, x2 = sorted(corners[:, 0])
            y1, y2 = sorted(corners[:, 1])
            box = [max(x1, 0.0), max(y1, 0.0), min(x2, W - 1.0), min(y2, H - 1.0)]
            n_vis = int(keep.sum())
            persons.append({
                "id": p.id,
                "keypoints": [[round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in kp],
                "box": [round(float(v), 2) for v in box],
                "area": round(float(cut.area * s * s), 1),
                "depth": round(d, 4),
                "visible_keypoints": n_vis,
                "ignore": n_vis < config.min_visible,
            })
            masks[p.id] = vis
        persons.sort(key=lambda e: e["id"])
        yield image, {"frame": t, "time": round(t / config.fps, 6), "persons": persons}, masks


def plan_key(plan: SequencePlan, sources: Sources, config: SequenceConfig) -> str:
    """A digest of everything that makes the sequence (for caches)."""
    text = json.dumps([GENERATOR_VERSION, config.to_dict(), sources.digest, plan.seed, plan.index,
                       [p.person.annotation_id for p in plan.paths], str(plan.background[1])], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def write_sequence(plan: SequencePlan, sources: Sources, config: SequenceConfig, folder: Path) -> Tuple[Path, Path]:
    """Write ``folder/NAME.mp4`` (cv2 mp4v) and ``folder/NAME.json`` (ground truth); returns both paths."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    video, gt_path = folder / f"{plan.name}.mp4", folder / f"{plan.name}.json"
    tmp = folder / f".{plan.name}.tmp.mp4"
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), config.fps, (config.width, config.height))
    if not writer.isOpened():
        raise RuntimeError(f"{tmp}: OpenCV cannot write mp4v video here")
    frames = []
    try:
        for image, gt, _ in render(plan, config):
            writer.write(image)
            frames.append(gt)
    finally:
        writer.release()
    tmp.replace(video)
    doc = {
        "name": plan.name,
        "generator": GENERATOR_VERSION,
        "key": plan_key(plan, sources, config),
        "seed": plan.seed,
        "index": plan.index,
        "config": config.to_dict(),
        "annotations": str(sources.annotations),
        "background": {"image_id": plan.background[0], "file": plan.background[1].name},
        "people": [{"id": p.id, "annotation_id": p.person.annotation_id, "image_id": p.person.image_id,
                    "mirror": p.mirror} for p in plan.paths],
        "video": video.name,
        "frames": frames,
    }
    gt_path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return video, gt_path


def make_sequences(images: Path, annotations: Path, folder: Path, count: int, seed: int = 0,
                   config: SequenceConfig = SequenceConfig(), log: Optional[Any] = None) -> List[Path]:
    """Make (or reuse, when their key matches) ``count`` sequences in ``folder``; their ground-truth paths."""
    sources = load_sources(images, annotations, config)
    out = []
    for i in range(count):
        plan = plan_sequence(sources, config, seed, i)
        gt_path = Path(folder) / f"{plan.name}.json"
        video = Path(folder) / f"{plan.name}.mp4"
        if gt_path.exists() and video.exists():
            try:
                if json.loads(gt_path.read_text()).get("key") == plan_key(plan, sources, config):
                    out.append(gt_path)
                    continue
            except (OSError, ValueError):
                pass
        write_sequence(plan, sources, config, folder)
        if log is not None:
            log(f"wrote {video}")
        out.append(gt_path)
    return out


def add_arguments(parser: Any, data: Path) -> None:
    """The command-line options of the source material and the :class:`SequenceConfig` (``data``:
    the shared data folder, whose coco_mini is the default)."""
    parser.add_argument("--images", type=Path, default=data / "coco_mini" / "images")
    parser.add_argument("--annotations", type=Path, default=data / "coco_mini" / "person_keypoints.json")
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--people", default="3,4", help="persons per sequence, LO,HI inclusive (default 3,4)")
    parser.add_argument("--size", default="640x480", help="WxH (default 640x480)")
    parser.add_argument("--fps", type=float, default=30.0)


def config_from(parser: Any, args: Any) -> SequenceConfig:
    """The :class:`SequenceConfig` of options added by :func:`add_arguments` (a usage error if bad)."""
    try:
        lo, hi = (int(v) for v in args.people.split(","))
        w, h = (int(v) for v in args.size.lower().split("x"))
        return SequenceConfig(frames=args.frames, width=w, height=h, fps=args.fps, people=(lo, hi))
    except ValueError as e:
        parser.error(f"--people LO,HI, --size WxH, --frames, --fps: {e}")
        raise


def load_ground_truth(path: Path) -> Dict[str, Any]:
    """The ground-truth document of one sequence."""
    return json.loads(Path(path).read_text())


def gt_arrays(frame: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ids (G,), keypoints (G, 17, 3), area (G,), ignore (G,) bool)`` of one ground-truth frame."""
    persons: Sequence[Dict[str, Any]] = frame["persons"]
    ids = np.array([p["id"] for p in persons], np.int64)
    kp = np.array([p["keypoints"] for p in persons], np.float64).reshape(-1, 17, 3)
    area = np.array([p["area"] for p in persons], np.float64)
    ignore = np.array([p["ignore"] for p in persons], bool)
    return ids, kp, area, ignore
