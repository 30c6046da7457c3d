"""benchmarks/*.py write their figures to a scratch folder unless asked to update the committed
ones (benchmarks/results/, quoted by the README) with --update-results."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

WRITERS = ("bench_decoder", "bench_preprocess", "decoder_ap", "keypoint_offset", "tune_decoder")


def _parse(argv):
    ap = argparse.ArgumentParser()
    common.add_output_options(ap)
    return ap.parse_args(argv)


def test_default_is_scratch_and_only_update_results_is_committed(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "SCRATCH", tmp_path / "scratch")
    assert common.output_dir(_parse([])) == tmp_path / "scratch" and (tmp_path / "scratch").is_dir()
    assert common.output_dir(_parse(["--out", str(tmp_path / "mine")])) == tmp_path / "mine"
    assert common.output_dir(_parse(["--update-results"])) == common.RESULTS == REPO / "benchmarks" / "results"
    with pytest.raises(SystemExit):
        _parse(["--out", str(tmp_path), "--update-results"])
    path = common.write_results("x", {"a": 1}, tmp_path)
    assert path == tmp_path / "x.json" and '"machine"' in path.read_text()


@pytest.mark.parametrize("name", WRITERS)
def test_every_script_writes_where_output_dir_says(name):
    """Each script takes the options and writes only into output_dir's folder: the committed
    folder (common.RESULTS) is never named for writing."""
    source = (REPO / "benchmarks" / f"{name}.py").read_text()
    tree = ast.parse(source)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"add_output_options", "output_dir"} <= called
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "write_results":
            assert len(node.args) == 3, f"{name}: write_results without the folder"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            assert not (isinstance(node.left, ast.Name) and node.left.id == "RESULTS"), f"{name}: writes RESULTS / ..."
