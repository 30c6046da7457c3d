"""EDGEPOSE_TEST_STRICT (set by .ci/run): a test that would skip fails, except for the allowed
reasons (no GPU / TensorRT here). Checked on a throw-away test file run with this conftest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

PROBE = '''
import pytest
from conftest import need
from pathlib import Path

def test_data_missing():
    need(Path("/no/such/shared/data"))

def test_extra_missing():
    pytest.importorskip("edgepose_no_such_extra")

@pytest.mark.skipif(True, reason="needs an NVIDIA GPU with its driver and cuda-python")
def test_gpu():
    pass

def test_runs():
    pass
'''
MODULE_SKIP = 'import pytest\npytest.importorskip("edgepose_no_such_extra")\n\ndef test_never():\n    pass\n'


def _pytest(folder: Path, strict: bool, *files: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env.pop("EDGEPOSE_TEST_STRICT", None)
    if strict:
        env["EDGEPOSE_TEST_STRICT"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-q", "-rA", "-p", "no:cacheprovider",
                           *files], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def probe(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the repo's configuration
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    return tmp_path


def _outcomes(out: str) -> dict:
    return {m.group(2).split("::")[-1]: m.group(1)
            for m in re.finditer(r"^(PASSED|FAILED|SKIPPED|ERROR) (?:\[\d+\] )?(\S+)", out, re.M)}


def test_without_the_switch_missing_things_skip(probe: Path) -> None:
    done = _pytest(probe, False, "test_probe.py", "test_module_skip.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"1 passed, 4 skipped", done.stdout), done.stdout


def test_strict_turns_skips_into_failures_except_the_allowed(probe: Path) -> None:
    done = _pytest(probe, True, "test_probe.py")
    assert done.returncode == 1, done.stdout + done.stderr
    outcome = _outcomes(done.stdout)
    assert outcome["test_data_missing"] == "FAILED" and outcome["test_extra_missing"] == "FAILED", done.stdout
    assert outcome["test_runs"] == "PASSED", done.stdout
    assert re.search(r"SKIPPED \[1\] test_probe.py:\d+: needs an NVIDIA GPU", done.stdout), done.stdout
    assert "test data not found: /no/such/shared/data" in done.stdout
    # A module-level importorskip: the module fails to collect, which stops the run (status 2).
    done = _pytest(probe, True, "test_module_skip.py")
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(r"ERROR test_module_skip.py", done.stdout) and "edgepose_no_such_extra" in done.stdout
