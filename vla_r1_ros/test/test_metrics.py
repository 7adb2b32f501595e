"""Paper metrics: IoU, DFD, HD, RMSE on hand-computed cases, and the `evaluate` summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_r1_ros.core.metrics import (
    discrete_frechet,
    evaluate,
    frechet_from_costs,
    hausdorff,
    iou,
    resample_by_arc_length,
    rmse_resampled,
    score_sample,
    summarize,
)
from vla_r1_ros.core.prompts import format_answer


@pytest.mark.parametrize(
    ("box_a", "box_b", "expected"),
    [
        ((0.5, 0.5, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2), 1.0),
        ((0.5, 0.5, 0.2, 0.2), (0.6, 0.5, 0.2, 0.2), 1 / 3),
        ((0.5, 0.5, 0.2, 0.2), (0.5, 0.5, 0.1, 0.1), 0.25),  # nested
        ((0.25, 0.5, 0.1, 0.1), (0.75, 0.5, 0.1, 0.1), 0.0),
        ((0.5, 0.5, 0.0, 0.0), (0.5, 0.5, 0.0, 0.0), 0.0),  # empty union
        ((0.95, 0.5, 0.2, 0.2), (0.925, 0.5, 0.15, 0.2), 1.0),  # clipped to [0, 1]
    ],
)
def test_iou(box_a, box_b, expected):
    assert iou(box_a, box_b) == pytest.approx(expected)


def test_frechet_dp_on_a_hand_made_cost_matrix():
    # The best coupling is (0, 0) → (1, 0) → (2, 1) → (2, 2) (a diagonal step skips the 3): worst cell 2.
    cost = np.array([[1.0, 9.0, 9.0], [2.0, 3.0, 9.0], [9.0, 2.0, 1.0]])
    assert frechet_from_costs(cost) == 2.0
    cost[2, 1] = 9.0  # now the coupling must go through (1, 1)
    assert frechet_from_costs(cost) == 3.0
    assert frechet_from_costs(np.array([[4.0]])) == 4.0
    assert frechet_from_costs(np.array([[1.0, 5.0, 2.0]])) == 5.0  # one row: every cell is visited
    with pytest.raises(ValueError):
        frechet_from_costs(np.zeros((0, 3)))


def naive_frechet(cost: np.ndarray) -> float:
    table = np.zeros_like(cost)
    for i in range(cost.shape[0]):
        for j in range(cost.shape[1]):
            before = [table[a, b] for a, b in ((i - 1, j), (i - 1, j - 1), (i, j - 1)) if a >= 0 and b >= 0]
            table[i, j] = max(cost[i, j], min(before)) if before else cost[i, j]
    return float(table[-1, -1])


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_frechet_dp_matches_the_cell_by_cell_recursion(rows, cols, seed):
    cost = np.random.default_rng(seed).random((rows, cols))
    assert frechet_from_costs(cost) == naive_frechet(cost)


def test_parallel_paths():
    a = [(0, 0), (1, 0), (2, 0)]
    b = [(0, 1), (1, 1), (2, 1)]
    assert discrete_frechet(a, b) == 1.0
    assert hausdorff(a, b) == 1.0
    assert rmse_resampled(a, b) == pytest.approx(1.0)


def test_reversed_path_separates_frechet_from_hausdorff():
    a, b = [(0, 0), (1, 0)], [(1, 0), (0, 0)]
    assert discrete_frechet(a, b) == 1.0  # order matters
    assert hausdorff(a, b) == 0.0  # sets do not
    assert rmse_resampled(a, b) == 1.0


def test_one_point_repeated_changes_nothing():
    a = [(0, 0), (1, 0), (2, 0)]
    b = [(0, 0), (1, 0), (1, 0), (2, 0)]
    assert discrete_frechet(a, b) == 0.0
    assert hausdorff(a, b) == 0.0
    assert rmse_resampled(a, b) == pytest.approx(0.0, abs=1e-12)


def test_hausdorff_is_symmetric_max():
    # a → b: 0; b → a: 5
    assert hausdorff([(0, 0)], [(0, 0), (3, 4)]) == 5.0
    assert hausdorff([(0, 0), (3, 4)], [(0, 0)]) == 5.0


def test_single_points():
    assert discrete_frechet([(0, 0)], [(3, 4)]) == 5.0
    assert rmse_resampled([(0, 0)], [(3, 4)]) == 5.0
    # a point against a segment: both become 2 points, (1,0) twice vs the ends, each 1 away
    assert rmse_resampled([(1, 0)], [(0, 0), (2, 0)]) == 1.0
    # against 3 points (0,0), (1,0), (2,0): distances 1, 0, 1
    assert rmse_resampled([(1, 0)], [(0, 0), (1, 0), (2, 0)]) == pytest.approx(math.sqrt(2 / 3))


def test_resampling_is_by_arc_length():
    np.testing.assert_allclose(resample_by_arc_length([(0, 0), (0.5, 0), (2, 0)], 3), [[0, 0], [1, 0], [2, 0]])
    # corner path of length 2: midpoint at the corner
    np.testing.assert_allclose(resample_by_arc_length([(0, 0), (1, 0), (1, 1)], 3), [[0, 0], [1, 0], [1, 1]])
    np.testing.assert_allclose(resample_by_arc_length([(2, 3), (2, 3)], 3), [[2, 3]] * 3)
    # unequal lengths: the 2-point path is resampled to 3 points first
    assert rmse_resampled([(0, 0), (2, 0)], [(0, 1), (1, 1), (2, 1)]) == pytest.approx(1.0)


def test_bad_path():
    with pytest.raises(ValueError):
        discrete_frechet([], [(0, 0)])
    with pytest.raises(ValueError):
        hausdorff([(0, 0, 0)], [(0, 0)])


def sample(task, prediction, reference, sample_id="s"):
    return {"id": sample_id, "task": task, "prediction": prediction, "reference": reference}


def test_score_sample_records():
    box = format_answer("r", (0.5, 0.5, 0.2, 0.2))
    record = score_sample(sample("affordance", format_answer("r", (0.6, 0.5, 0.2, 0.2)), box, "a1"))
    assert record == {
        "id": "a1",
        "task": "affordance",
        "ok": True,
        "format": 1,
        "iou": pytest.approx(100 / 3),
        "error": None,
    }
    path = format_answer("r", [(0.1, 0.1), (0.2, 0.1)])
    record = score_sample(sample("trajectory", format_answer("r", [(0.1, 0.2), (0.2, 0.2)]), path))
    # waypoints ×1000: a parallel shift of 100
    assert record["dfd"] == pytest.approx(100) and record["hd"] == pytest.approx(100)
    assert record["rmse"] == pytest.approx(100)
    failed = score_sample(sample("trajectory", "<output>[[0.1, 0.2]]</output>", path))
    assert failed["ok"] is False and failed["dfd"] is None and "at least 2 waypoints" in failed["error"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (sample("grasp", "", ""), "unknown task"),
        (sample("affordance", None, ""), "must both be strings"),
        (sample("affordance", "", "<output>[1]</output>"), "reference does not parse"),
    ],
)
def test_score_sample_rejects_unusable_samples(bad, message):
    with pytest.raises(ValueError, match=message):
        score_sample(bad)


def test_evaluate_summary():
    box = format_answer("r", (0.5, 0.5, 0.2, 0.2))
    path = format_answer("r", [(0.1, 0.1), (0.2, 0.1)])
    samples = [
        sample("affordance", box, box),  # IoU 100
        sample("affordance", "<output>{'x': 0.6, 'y': 0.5, 'width': 0.2, 'height': 0.2}</output>", box),  # 33.3
        sample("affordance", "I cannot see it", box),  # parse failure: IoU 0
        sample("trajectory", format_answer("r", [(0.1, 0.2), (0.2, 0.2)]), path),  # all three distances 100
        sample("trajectory", path, path),  # all 0
        sample("trajectory", "<think>x</think><output>oops</output>", path),  # failure: left out of the means
    ]
    summary = evaluate(samples)
    assert summary == {
        "affordance": {"n": 3, "iou": pytest.approx((100 + 100 / 3 + 0) / 3)},
        "trajectory": {
            "n": 3,
            "dfd": pytest.approx(50),
            "hd": pytest.approx(50),
            "rmse": pytest.approx(50),
            "avg": pytest.approx(50),
        },
        "format_rate": pytest.approx(3 / 6),
        "parse_failures": 2,
    }


def test_summary_of_nothing():
    assert summarize([]) == {
        "affordance": {"n": 0, "iou": None},
        "trajectory": {"n": 0, "dfd": None, "hd": None, "rmse": None, "avg": None},
        "format_rate": None,
        "parse_failures": 0,
    }
