"""COCO person keypoints: load annotations, convert results, and score with COCO keypoint AP.

    from edgepose import coco
    ann = coco.load_annotations("person_keypoints_val2017.json")
    results = []
    for image in ann["images"]:
        poses = model.infer(cv2.imread(...))            # Poses in image pixels
        results += coco.poses_to_results(poses, image["id"])
    print(coco.evaluate(results, ann))                   # {"AP": ..., "AP50": ..., ..., "AR": ...}

Scoring uses pycocotools' ``COCOeval(..., "keypoints")``, an optional dependency
(``pip install edgepose[coco]``); loading and converting need only numpy.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import numpy as np

from .errors import BackendUnavailable, EdgePoseError
from .results import Poses
from .topology import BODYPOSENET, COCO17_KEYPOINTS, Topology, coco17_to_topology

__all__ = [
    "METRICS",
    "load_annotations",
    "evaluate",
    "poses_to_results",
    "ground_truth_poses",
    "annotated_images",
]

# The keypoint summary of COCOeval: ``stats[i]`` for the i-th name.
METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR")

AnnotationsLike = Union[str, "os.PathLike[str]", Dict[str, Any]]

PERSON_CATEGORY_ID = 1


def load_annotations(source: AnnotationsLike, *, scoring: bool = False) -> Dict[str, Any]:
    """Read and validate a COCO person-keypoints json (or validate an already loaded dict).

    Checks what every use relies on: ``images`` (each with an integer ``id``), ``annotations``
    (``image_id`` of a listed image, ``category_id``; person annotations with ``keypoints`` carry
    17 x 3 numbers) and ``categories`` holding a person category with COCO's 17 keypoints.
    With ``scoring`` (what :func:`evaluate` and ``edgepose eval`` ask for, before any inference)
    also what pycocotools needs of every annotation: a unique integer ``id``, ``iscrowd`` 0/1, a
    finite ``area``, a 4-number ``bbox``, an integer ``num_keypoints`` and, for persons, 51 finite
    ``keypoints``; unique image ids; and at least one person annotation (otherwise every AP is 0).

    Returns:
        The annotation dict (the caller's dict itself when one is passed; it is not modified).
    Raises:
        EdgePoseError: the file is missing, unreadable, not json, or not COCO person keypoints;
            the message names the file and the problem.
    """
    if isinstance(source, dict):
        data, where = source, "annotations"
    else:
        path = Path(os.fspath(source))
        where = str(path)
        if not path.is_file():
            raise EdgePoseError(f"{where}: annotation file not found")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError) as e:
            raise EdgePoseError(f"{where}: cannot read annotation file ({e})") from None
        except json.JSONDecodeError as e:
            raise EdgePoseError(f"{where}: not valid json ({e})") from None
    _validate(data, where)
    if scoring:
        _validate_for_scoring(data, where)
    return data


def _validate(data: Any, where: str) -> None:
    def fail(msg: str) -> None:
        raise EdgePoseError(f"{where}: not a COCO person-keypoints file: {msg}")

    if not isinstance(data, dict):
        fail(f"the top level is a {type(data).__name__}, expected an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            fail(f"missing list {key!r}")
    image_ids = set()
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int):
            fail(f"images[{i}] has no integer 'id'")
        image_ids.add(image["id"])
    person = [c for c in data["categories"] if isinstance(c, dict) and c.get("id") == PERSON_CATEGORY_ID]
    if not person:
        fail(f"no category with id {PERSON_CATEGORY_ID} (person)")
    names = person[0].get("keypoints")
    if names is not None and tuple(names) != COCO17_KEYPOINTS:
        fail(f"the person category's keypoints are not COCO's 17 in order (got {names!r})")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            fail(f"annotations[{i}] is not an object")
        if ann.get("image_id") not in image_ids:
            fail(f"annotations[{i}] refers to image_id {ann.get('image_id')!r}, which is not in 'images'")
        kp = ann.get("keypoints")
        if ann.get("category_id") == PERSON_CATEGORY_ID and kp is not None:
            if not isinstance(kp, list) or len(kp) != 51:
                fail(f"annotations[{i}]: 'keypoints' must be a list of 17 x 3 = 51 numbers")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validate_for_scoring(data: Dict[str, Any], where: str) -> None:
    """What pycocotools' COCOeval reads of each annotation, checked up front (it fails with a bare
    KeyError / TypeError deep inside, after the whole inference run, or scores 0 silently)."""
    def fail(msg: str) -> None:
        raise EdgePoseError(f"{where}: cannot be scored: {msg}")

    seen_images: Dict[Any, int] = {}
    for i, image in enumerate(data["images"]):
        if image["id"] in seen_images:
            fail(f"images[{i}]: id {image['id']} appears twice (first at images[{seen_images[image['id']]}])")
        seen_images[image["id"]] = i
    seen: Dict[Any, int] = {}
    persons = 0
    for i, ann in enumerate(data["annotations"]):
        name = f"annotations[{i}]" + (f" (id {ann['id']})" if isinstance(ann.get("id"), int) else "")
        person = ann.get("category_id") == PERSON_CATEGORY_ID
        needed = ("id", "iscrowd", "area", "bbox", "num_keypoints") + (("keypoints",) if person else ())
        missing = [k for k in needed if k not in ann]
        if missing:
            fail(f"{name}: missing {', '.join(repr(k) for k in missing)}")
        if not isinstance(ann["id"], int) or isinstance(ann["id"], bool):
            fail(f"{name}: 'id' must be an integer, got {ann['id']!r}")
        if ann["id"] in seen:
            fail(f"annotations[{i}]: id {ann['id']} appears twice (first at annotations[{seen[ann['id']]}])")
        seen[ann["id"]] = i
        if ann["iscrowd"] not in (0, 1) or isinstance(ann["iscrowd"], float):
            fail(f"{name}: 'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
        if not _is_number(ann["area"]) or ann["area"] < 0:
            fail(f"{name}: 'area' must be a finite number >= 0, got {ann['area']!r}")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            fail(f"{name}: 'bbox' must be 4 finite numbers [x, y, width, height], got {str(bbox)[:60]}")
        nk = ann["num_keypoints"]
        if not isinstance(nk, int) or isinstance(nk, bool) or nk < 0:
            fail(f"{name}: 'num_keypoints' must be an integer >= 0, got {nk!r}")
        if person:
            kp = ann["keypoints"]
            if not (isinstance(kp, list) and len(kp) == 51 and all(_is_number(v) for v in kp)):
                bad = next((v for v in kp if not _is_number(v)), None) if isinstance(kp, list) else kp
                fail(f"{name}: 'keypoints' must be 17 x 3 = 51 finite numbers, got "
                     f"{f'{len(kp)} values' if isinstance(kp, list) else type(kp).__name__}"
                     + (f" including {bad!r}" if isinstance(kp, list) and len(kp) == 51 else ""))
            persons += 1
    if not persons:
        fail(f"no person annotation (category_id {PERSON_CATEGORY_ID}): every AP would be 0")


def annotated_images(annotations: AnnotationsLike) -> List[Dict[str, Any]]:
    """The ``images`` entries of ``annotations``, in file order (id, file_name, width, height)."""
    return list(load_annotations(annotations)["images"])


def poses_to_results(poses: Poses, image_id: int, category_id: int = PERSON_CATEGORY_ID) -> List[Dict[str, Any]]:
    """COCO keypoint results for the persons of one image.

    ``poses`` must be in image pixels (``EdgePose.infer`` returns them so). Keypoints are mapped
    to COCO-17 by name (BodyPoseNet's neck has no COCO counterpart and is dropped); coordinates
    stay floating point (TAO truncates them to int, which costs AP for small persons); found
    keypoints get v = 1, missing ones (0, 0, 0); the result's score is the person score.
    """
    if not isinstance(poses, Poses):
        raise TypeError(f"poses: expected Poses, got {type(poses).__name__}")
    return poses.to_coco(image_id=image_id, category_id=category_id)


def ground_truth_poses(annotations: AnnotationsLike, image_id: int, topology: Topology = BODYPOSENET) -> Poses:
    """The labelled persons of one image as :class:`Poses` in ``topology`` (default BodyPoseNet-18).

    Crowd regions and person annotations without labelled keypoints are left out. Labelled
    keypoints (v = 1 or 2) get score 1.0; unlabelled ones are (0, 0, 0); the neck is the
    shoulders' midpoint when both are labelled. Every person's score is 1.0.

    Raises:
        EdgePoseError: ``image_id`` is not an image of ``annotations``.
    """
    data = load_annotations(annotations)
    if not any(image["id"] == image_id for image in data["images"]):
        raise EdgePoseError(f"image_id {image_id!r} is not an image of the annotations")
    rows = [
        ann["keypoints"]
        for ann in data["annotations"]
        if ann["image_id"] == image_id
        and ann.get("category_id") == PERSON_CATEGORY_ID
        and not ann.get("iscrowd", 0)
        and ann.get("keypoints")
        and any(v > 0 for v in ann["keypoints"][2::3])
    ]
    if not rows:
        return Poses.empty(topology)
    kp = coco17_to_topology(np.asarray(rows, dtype=np.float32).reshape(-1, 17, 3), topology)
    kp[kp[:, :, 2] > 0, 2] = 1.0
    return Poses(kp, np.ones(len(rows), np.float32), topology)


def _pycocotools() -> Any:
    """Import pycocotools lazily; a clear error says how to install it."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise BackendUnavailable(
            "COCO evaluation needs pycocotools: pip install edgepose[coco] (or pip install pycocotools)"
        ) from None
    return COCO, COCOeval


def _check_results(results: Iterable[Dict[str, Any]], image_ids: set) -> List[Dict[str, Any]]:
    """Validate result dicts; return deep copies (pycocotools writes into the dicts it loads)."""
    checked = []
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise EdgePoseError(f"results[{i}]: expected a dict, got {type(r).__name__}")
        missing = [k for k in ("image_id", "keypoints", "score") if k not in r]
        if missing:
            raise EdgePoseError(f"results[{i}]: missing {', '.join(missing)}")
        kp = r["keypoints"]
        if len(kp) != 51 or not all(math.isfinite(float(v)) for v in kp):
            raise EdgePoseError(f"results[{i}]: 'keypoints' must be 51 finite numbers (17 x, y, v)")
        if r["image_id"] not in image_ids:
            raise EdgePoseError(f"results[{i}]: image_id {r['image_id']!r} is not an image of the annotations")
        r = copy.deepcopy(r)
        r.setdefault("category_id", PERSON_CATEGORY_ID)
        r["keypoints"] = [float(v) for v in kp]
        r["score"] = float(r["score"])
        checked.append(r)
    return checked


def evaluate(
    results: List[Dict[str, Any]],
    annotations: AnnotationsLike,
    image_ids: Optional[Iterable[int]] = None,
) -> Dict[str, float]:
    """COCO keypoint AP of ``results`` against ``annotations``.

    Args:
        results: COCO keypoint result dicts (``poses_to_results``), in image pixels.
        annotations: a COCO person-keypoints json path or its loaded dict.
        image_ids: the images that were run (default: every image of ``annotations``). Pass
            the subset when only some images were run, or the others count as misses.
    Returns:
        ``{"AP", "AP50", "AP75", "APm", "APl", "AR"}`` as floats in [0, 1], from COCOeval's
        keypoint summary (OKS 0.50:0.95, all / medium / large persons, 20 detections per image).
        No results at all scores 0.0; a metric COCOeval cannot define (it reports -1, e.g. APm
        when no medium-sized person is labelled) is reported as 0.0.
    Raises:
        EdgePoseError: malformed annotations (see ``load_annotations(..., scoring=True)``) or
            results, or unknown image ids.
        BackendUnavailable: pycocotools is not installed.
    """
    data = load_annotations(annotations, scoring=True)
    COCO, COCOeval = _pycocotools()
    all_ids = {image["id"] for image in data["images"]}
    if image_ids is None:
        ids = sorted(all_ids)
    else:
        ids = sorted({int(i) for i in image_ids})
        unknown = [i for i in ids if i not in all_ids]
        if unknown:
            raise EdgePoseError(f"image_ids: {unknown[:5]} not images of the annotations")
    selected = set(ids)
    dets = [r for r in _check_results(results, all_ids) if r["image_id"] in selected]
    if not dets or not ids:
        # COCO.loadRes cannot load an empty list; with nothing detected every metric is 0.
        return {name: 0.0 for name in METRICS}
    # pycocotools prints progress on stdout; keep the caller's stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(data)
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: max(0.0, float(v)) for name, v in zip(METRICS, ev.stats[: len(METRICS)])}
