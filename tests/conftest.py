"""Shared fixtures: the real test material in ../shared/data (never copied into the repo).

Strict mode (``EDGEPOSE_TEST_STRICT=1``, set by ``.ci/run``): a test that would skip fails
instead, unless its reason is one of ``ALLOWED_SKIPS`` (no GPU, no TensorRT on this machine). A
missing ``../shared/data`` or a ``[test]`` extra that did not install then fails the run rather
than passing it with hundreds of skips.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MODELS = DATA / "models"
COCO_MINI = DATA / "coco_mini"
GOLDEN = DATA / "golden"


STRICT = os.environ.get("EDGEPOSE_TEST_STRICT", "") not in ("", "0")

# Skip reasons that stay skips in strict mode: hardware this machine may lack. Each pattern is
# searched in the skip reason; everything else that skips is a failure under EDGEPOSE_TEST_STRICT.
ALLOWED_SKIPS = (
    r"needs an NVIDIA GPU",  # gpu-marked tests (CUDA driver, cupy, TensorRT)
    r"needs TensorRT",
    r"could not import 'supervision'",  # optional [supervision] extra (opencv-python, not headless)
    r"TensorRT can run here",  # the no-TensorRT error path, tested where TensorRT is absent
    r"a GPU is here",  # the no-GPU error path, tested where there is no GPU
    r"could not import 'cupy'",  # cupy is no [test] extra: it comes with a GPU setup
)


def skip_allowed(reason: str) -> bool:
    """Whether a skip with ``reason`` is legitimate even in strict mode (see ``ALLOWED_SKIPS``)."""
    return any(re.search(p, reason) for p in ALLOWED_SKIPS)


def need(path: Path) -> Path:
    """``path`` if it exists, else skip the test with the reason (fail it in strict mode)."""
    if not path.exists():
        why = f"test data not found: {path} (the shared data folder sits beside the repo)"
        if STRICT:
            pytest.fail(f"{why}; EDGEPOSE_TEST_STRICT is set, so this is a failure", pytrace=False)
        pytest.skip(why)
    return path


def _strict_report(report) -> None:
    """Turn a skip whose reason is not allowed into a failure (strict mode only)."""
    if not (STRICT and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if skip_allowed(reason):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under EDGEPOSE_TEST_STRICT=1 (not an allowed skip): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _strict_report(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Module-level skips (``pytest.importorskip`` of a [test] extra at import time)."""
    outcome = yield
    _strict_report(outcome.get_result())


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


def nearest_person_distance(a, b) -> np.ndarray:
    """Per person of Poses ``a``: the median distance of shared keypoints (at least 3) to the closest
    person of Poses ``b`` (inf when none shares 3 keypoints)."""
    d = []
    for pa in a.keypoints:
        best = np.inf
        for pb in b.keypoints:
            both = (pa[:, 2] > 0) & (pb[:, 2] > 0)
            if both.sum() >= 3:
                best = min(best, float(np.median(np.hypot(*(pa[both, :2] - pb[both, :2]).T))))
        d.append(best)
    return np.array(d)


def cli_error(capsys, code: int, expected: int = 1) -> str:
    """The one stderr line of a CLI run that failed with exit code ``expected`` (no traceback)."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == expected and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


# ------------------------------------------------------------------------------------------------
# Hypothesis: in CI (``CI`` set), the same examples on every run and a failure's reproduction blob
# printed, with a bounded example count and no per-example deadline (a shared, loaded machine).
# ------------------------------------------------------------------------------------------------
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # hypothesis is a [test] extra; the tests that use it import it themselves
    _hypothesis_settings = None
if _hypothesis_settings is not None:
    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True, max_examples=200, deadline=None)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
