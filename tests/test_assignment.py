"""The C++ optimal matcher (csrc/assignment.cpp, ``Matcher::assign`` / ``solve_rectangular``) through
``edgepose._decoder.linear_assignment``, against brute force.

The oracle is independent of the solver: a maximum-weight matching over the admissible pairs
(weight >= min_weight) is the best permutation of the matrix padded to a square with zeros, where
a zero (an inadmissible pair, or padding) means "unmatched". All permutations of 6 are 720, so
thousands of problems are checked in a few vectorised numpy steps.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgepose._decoder import linear_assignment


def _best_by_brute_force(weights: np.ndarray, min_weight: float) -> np.ndarray:
    """(B,) the maximum total admissible weight of each of B problems (B, n, n), already padded."""
    n = weights.shape[1]
    admissible = np.where(weights >= min_weight, weights, 0.0)
    perms = np.array(list(itertools.permutations(range(n))))  # (n!, n)
    rows = np.arange(n)
    totals = admissible[:, rows[None, :], perms].sum(axis=2)  # (B, n!)
    return totals.max(axis=1)


def _random_problems(rng: np.random.Generator, count: int, nr: int, nc: int) -> np.ndarray:
    """Weights in (0, 1]: half continuous, half on a coarse grid (many ties), some pairs near the threshold."""
    w = rng.uniform(0.0, 1.0, size=(count, nr, nc))
    coarse = rng.random(count) < 0.5
    w[coarse] = np.ceil(w[coarse] * 5) / 5
    return w


@pytest.mark.parametrize("min_weight", [0.05, 0.3, 0.6])
def test_linear_assignment_is_optimal_against_brute_force(min_weight):
    rng = np.random.default_rng(1234)
    checked = nonempty = 0
    for nr, nc in itertools.product(range(1, 7), repeat=2):
        count = 160 if (nr, nc) == (6, 6) else 30  # 1210 problems per threshold, square ones the most
        problems = _random_problems(rng, count, nr, nc)
        n = max(nr, nc)
        padded = np.zeros((count, n, n))
        padded[:, :nr, :nc] = problems
        best = _best_by_brute_force(padded, min_weight)
        for w, expected in zip(problems, best):
            pairs = linear_assignment(w, min_weight)
            assert pairs.dtype == np.int64 and pairs.ndim == 2 and pairs.shape[1] == 2
            r, c = pairs[:, 0], pairs[:, 1]
            assert len(set(r.tolist())) == len(r) and len(set(c.tolist())) == len(c), "a row or column used twice"
            assert np.all(np.diff(r) > 0), "pairs not in ascending row order"
            assert np.all(w[r, c] >= min_weight), "an inadmissible pair was returned"
            total = float(w[r, c].sum())
            assert total == pytest.approx(expected, abs=1e-9), f"{nr}x{nc}: total {total}, optimum {expected}\n{w}"
            checked += 1
            nonempty += len(pairs) > 0
    assert checked == 35 * 30 + 160 and nonempty > checked // 2


def test_linear_assignment_beats_greedy_where_greedy_fails():
    # Greedy takes the 0.9 and leaves 0.2 + nothing; the optimum is 0.85 + 0.8.
    w = np.array([[0.9, 0.85], [0.8, 0.0]])
    pairs = linear_assignment(w, 0.1)
    assert pairs.tolist() == [[0, 1], [1, 0]]


def test_linear_assignment_takes_ints_and_empty_sides():
    assert linear_assignment(np.array([[3, 1], [1, 3]], dtype=np.int32), 1.0).tolist() == [[0, 0], [1, 1]]
    assert linear_assignment(np.zeros((0, 4)), 0.5).shape == (0, 2)
    assert linear_assignment(np.zeros((3, 0)), 0.5).shape == (0, 2)
    assert linear_assignment(np.full((2, 3), 0.4), 0.5).shape == (0, 2), "nothing reaches min_weight"
    # A transposed (strided) view and a tall matrix give the transposed answer.
    w = np.random.default_rng(0).random((3, 5))
    tall = linear_assignment(w.T, 0.01)
    wide = linear_assignment(w, 0.01)
    assert sorted(map(tuple, tall[:, ::-1].tolist())) == sorted(map(tuple, wide.tolist()))


@pytest.mark.parametrize("weights, min_weight, message", [
    (np.zeros(3), 0.5, "2-D"),
    (np.zeros((2, 2, 2)), 0.5, "2-D"),
    (np.array([[0.5, np.nan]]), 0.1, "NaN or infinity"),
    (np.array([[0.5, np.inf]]), 0.1, "NaN or infinity"),
    (np.array([["a", "b"]]), 0.1, "dtype"),
    ([[0.5, 0.2]], 0.1, "numpy array"),
    (np.ones((2, 2)), 0.0, "min_weight"),
    (np.ones((2, 2)), float("nan"), "min_weight"),
])
def test_linear_assignment_rejects_bad_input_with_value_error(weights, min_weight, message):
    with pytest.raises(ValueError, match=message):
        linear_assignment(weights, min_weight)
