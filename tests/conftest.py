"""Shared fixtures: the real test material in ../shared/data (never copied into the repo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MODELS = DATA / "models"
COCO_MINI = DATA / "coco_mini"
GOLDEN = DATA / "golden"


def need(path: Path) -> Path:
    """``path`` if it exists, else skip the test with the reason."""
    if not path.exists():
        pytest.skip(f"test data not found: {path} (the shared data folder sits beside the repo)")
    return path


@pytest.fixture(scope="session")
def coco_annotations() -> dict:
    with open(need(COCO_MINI / "person_keypoints.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def golden_maps() -> dict:
    """Real network outputs: {model: (heatmap, paf, layout)} for the three models, one image."""
    out = {}
    tf = np.load(need(GOLDEN / "coco_000000196141_552x368.npz"))
    for m in ("tfpose_mobilenet_thin", "tfpose_mobilenet_v2_small"):
        out[m] = (tf[f"{m}__heatmap"], tf[f"{m}__paf"], "NHWC")
    omz = np.load(need(GOLDEN / "coco_000000196141_552x368_omz_hpe0001.npz"))
    m = "omz_human_pose_estimation_0001"
    out[m] = (omz[f"{m}__heatmap"], omz[f"{m}__paf"], "NCHW")
    return out


# -- hypothesis profiles ---------------------------------------------------------------------------
# "ci": the same examples on every run (derandomized), a bounded number of them, no deadline (the
# machine may be loaded), and a failing example printed with what reproduces it. .ci/run selects it
# with HYPOTHESIS_PROFILE=ci; locally the default profile (random examples) stays.
try:
    import os as _os

    from hypothesis import settings as _settings

    _settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, print_blob=True)
    _settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:  # hypothesis is in the [test] extra; the tests that use it import it themselves
    pass
