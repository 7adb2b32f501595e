"""Rewards against hand-computed values of the reference's formulas, and against a pure-Python oracle."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_r1_ros.bench.rewards import naive_orientation_frechet
from vla_r1_ros.core.prompts import format_answer
from vla_r1_ros.core.rewards import (
    FORMAT_WEIGHT,
    TASK_WEIGHT,
    TRAJECTORY_NORMALIZER,
    RewardBreakdown,
    format_reward,
    orientation_frechet_distance,
    region_reward,
    score_completion,
    tangents_and_lengths,
    trajectory_reward,
)

NORM = math.sqrt(2) + 0.25 * math.pi + 0.1 * math.log(10)


def test_constants():
    assert (TASK_WEIGHT, FORMAT_WEIGHT) == (0.9, 0.1)
    assert pytest.approx(NORM) == TRAJECTORY_NORMALIZER
    assert pytest.approx(2.4298722) == NORM


# ---------- region: (GIoU + 1) / 2 ----------


@pytest.mark.parametrize(
    ("pred", "ref", "expected"),
    [
        ((0.5, 0.5, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2), 1.0),  # identical
        # half overlap: I = 0.02, U = 0.06, C = 0.06 → GIoU = 1/3
        ((0.5, 0.5, 0.2, 0.2), (0.6, 0.5, 0.2, 0.2), 2 / 3),
        # disjoint: I = 0, U = 0.02, C = 0.6 × 0.1 = 0.06 → GIoU = −(0.06 − 0.02)/0.06 = −2/3
        ((0.25, 0.5, 0.1, 0.1), (0.75, 0.5, 0.1, 0.1), 1 / 6),
        # negative sizes are taken as absolute values
        ((0.5, 0.5, -0.2, -0.2), (0.6, 0.5, 0.2, 0.2), 2 / 3),
        # clipped to [0, 1]: (0.95, w 0.2) is the same box as (0.925, w 0.15)
        ((0.95, 0.5, 0.2, 0.2), (0.925, 0.5, 0.15, 0.2), 1.0),
        # degenerate boxes at one point: IoU 0 (empty union), C floored → GIoU 0
        ((0.5, 0.5, 0.0, 0.0), (0.5, 0.5, 0.0, 0.0), 0.5),
        # a point inside a box: IoU 0, C = U → GIoU 0
        ((0.5, 0.5, 0.0, 0.0), (0.5, 0.5, 0.2, 0.2), 0.5),
        # two points on a diagonal: C = 0.64, U floored at 1e-12 → GIoU ≈ −1
        ((0.1, 0.1, 0.0, 0.0), (0.9, 0.9, 0.0, 0.0), (1 - (0.64 - 1e-12) / 0.64) / 2),
        # two points on a horizontal line: C has zero area too → GIoU 0 (the reference's quirk)
        ((0.1, 0.5, 0.0, 0.0), (0.9, 0.5, 0.0, 0.0), 0.5),
        # entirely outside the image: both clip to the corner point (1, 1)
        ((3.0, 3.0, 0.5, 0.5), (5.0, 5.0, 0.5, 0.5), 0.5),
    ],
)
def test_region_reward_hand_computed(pred, ref, expected):
    assert region_reward(pred, ref) == pytest.approx(expected, abs=1e-12)


# ---------- trajectory: orientation-sensitive discrete Fréchet ----------


def test_tangents_and_lengths():
    # right, then up: the corner's tangent is the bisector
    tangents, lengths = tangents_and_lengths(np.array([[0.2, 0.2], [0.5, 0.2], [0.5, 0.6]]))
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(tangents, [[1, 0], [s, s], [0, 1]])
    np.testing.assert_allclose(lengths, [0.3, 0.4, 0.4])
    # a reversal: the unit sum cancels, the incoming direction is kept
    tangents, _ = tangents_and_lengths(np.array([[0.2, 0.5], [0.6, 0.5], [0.4, 0.5]]))
    np.testing.assert_allclose(tangents, [[1, 0], [1, 0], [-1, 0]])
    # a repeated point: unit(0) = (0, 0), so the neighbours' tangents are the other segment's direction
    tangents, lengths = tangents_and_lengths(np.array([[0.2, 0.5], [0.5, 0.5], [0.5, 0.5], [0.8, 0.5]]))
    np.testing.assert_allclose(tangents, [[1, 0], [1, 0], [1, 0], [1, 0]])
    np.testing.assert_allclose(lengths, [0.3, 0.0, 0.3, 0.3])
    tangents, lengths = tangents_and_lengths(np.array([[0.3, 0.3]]))
    np.testing.assert_array_equal(tangents, [[0, 0]])
    np.testing.assert_array_equal(lengths, [0])


def test_identical_paths_score_one():
    # Not exactly 1: a unit tangent's dot product with itself can round just below 1, and arccos turns
    # that into ~1e-8 rad — the reference's arithmetic does the same.
    path = [[0.1, 0.1], [0.3, 0.5], [0.6, 0.4], [0.9, 0.9]]
    assert orientation_frechet_distance(path, path) == pytest.approx(0.0, abs=1e-8)
    assert trajectory_reward(path, path) == pytest.approx(1.0, abs=1e-8)
    straight = [[0.2, 0.5], [0.5, 0.5], [0.8, 0.5]]
    assert trajectory_reward(straight, straight) == 1.0


def test_single_point_paths():
    assert trajectory_reward([[0.5, 0.5]], [[0.5, 0.5]]) == 1.0
    # tangents (0, 0) → angle 0; lengths 0 → |ln(1e-12 / 1e-12)| = 0; only the distance counts
    assert trajectory_reward([[0.2, 0.5]], [[0.5, 0.5]]) == pytest.approx(1 - 0.3 / NORM)
    # one point against a segment: |ln((0 + ε) / (0.6 + ε))| ≈ 27 → D ≥ the normalizer → 0
    assert trajectory_reward([[0.5, 0.5]], [[0.2, 0.5], [0.8, 0.5]]) == 0.0


def test_parallel_shift_is_the_euclidean_offset():
    ref = [[0.2, 0.4], [0.8, 0.4]]
    pred = [[0.2, 0.6], [0.8, 0.6]]
    assert orientation_frechet_distance(ref, pred) == pytest.approx(0.2)
    assert trajectory_reward(pred, ref) == pytest.approx(1 - 0.2 / NORM)


def test_length_ratio_term():
    # same direction, segments 0.2 vs 0.4: every pair pays 0.1·ln 2; the coupling (0,0),(1,1) adds 0.2
    ref, pred = [[0.2, 0.5], [0.4, 0.5]], [[0.2, 0.5], [0.6, 0.5]]
    assert orientation_frechet_distance(ref, pred) == pytest.approx(0.2 + 0.1 * math.log(2))


def test_reversed_path():
    # every tangent pair is opposite (+0.25π); the best coupling still pays distance 0.6 at both ends
    ref, pred = [[0.2, 0.5], [0.8, 0.5]], [[0.8, 0.5], [0.2, 0.5]]
    assert orientation_frechet_distance(ref, pred) == pytest.approx(0.6 + 0.25 * math.pi)
    assert trajectory_reward(pred, ref) == pytest.approx(1 - (0.6 + 0.25 * math.pi) / NORM)


def test_one_point_repeated():
    # The repeated point has local length 0: its ratio term is 0.1·ln((0.3 + ε)/ε) ≈ 2.64 > every other
    # cost on the best coupling, and more than the normalizer allows, so the reward is 0.
    ref = [[0.2, 0.5], [0.5, 0.5], [0.8, 0.5]]
    pred = [[0.2, 0.5], [0.5, 0.5], [0.5, 0.5], [0.8, 0.5]]
    assert orientation_frechet_distance(ref, pred) == pytest.approx(0.1 * math.log((0.3 + 1e-12) / 1e-12))
    assert trajectory_reward(pred, ref) == 0.0


def test_coordinates_are_clipped_first():
    assert trajectory_reward([[-0.5, 0.5], [1.5, 0.5]], [[0.0, 0.5], [1.0, 0.5]]) == 1.0


def test_empty_path_is_an_error():
    with pytest.raises(ValueError):
        trajectory_reward([], [[0.1, 0.1]])


_coordinate = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(-0.2, 1.2))
_path = st.lists(st.tuples(_coordinate, _coordinate), min_size=1, max_size=7)


@settings(max_examples=200, deadline=None)
@given(pred=_path, ref=_path)
def test_vectorized_matches_the_pure_python_reference(pred, ref):
    # Coordinates from a small set make repeated points and reversals common. The tolerance covers arccos
    # near cos = 1 turning last-bit differences (np.hypot vs math.hypot) into ~5e-9 rad.
    vectorized = orientation_frechet_distance(ref, pred)
    assert vectorized == pytest.approx(naive_orientation_frechet(ref, pred), rel=1e-9, abs=1e-8)
    assert 0.0 <= trajectory_reward(pred, ref) <= 1.0


@settings(max_examples=200, deadline=None)
@given(
    pred=st.tuples(*[st.floats(-2, 2)] * 4),
    ref=st.tuples(*[st.floats(-2, 2)] * 4),
)
def test_region_reward_in_unit_interval(pred, ref):
    assert 0.0 <= region_reward(pred, ref) <= 1.0


# ---------- format and total ----------


def answer(output) -> str:
    return format_answer("reasoning", output)


BOX = {"x": 0.5, "y": 0.5, "width": 0.2, "height": 0.2}
PATH = [[0.2, 0.5], [0.5, 0.5], [0.8, 0.5]]


def test_format_reward_reexported():
    assert format_reward(answer(BOX)) == 1.0 and format_reward("<output>[1]</output>") == 0.0


def test_score_completion_perfect_and_breakdown():
    assert score_completion("affordance", answer(BOX), answer(BOX)) == RewardBreakdown(1.0, 1.0, 1.0)
    assert score_completion("trajectory", answer(PATH), answer(PATH)) == RewardBreakdown(1.0, 1.0, 1.0)
    assert RewardBreakdown(0.5, 1.0, 0.4444).to_json() == {"score": 0.5, "format": 1, "task_score": 0.4444}


def test_score_completion_weights():
    shifted = dict(BOX, x=0.6)  # half overlap: task 2/3
    result = score_completion("affordance", answer(shifted), answer(BOX))
    assert result.task_score == pytest.approx(2 / 3)
    assert result.score == pytest.approx(0.9 * 2 / 3 + 0.1)
    no_think = f"<output> {json.dumps(shifted)} </output>"
    assert score_completion("affordance", no_think, answer(BOX)).score == pytest.approx(0.9 * 2 / 3)


@pytest.mark.parametrize(
    "completion",
    [
        answer(PATH),  # kind mismatch: a path for a box
        "<think> r </think> <output> {'x': 0.5, 'y': 0.5, 'width': 0.2, 'height': 0.2} </output>",  # not strict
        "<think> r </think> <output> ```json\n" + json.dumps(BOX) + "\n``` </output>",
        '<think> r </think> <output> {"x": null, "y": 0.5, "width": 0.2, "height": 0.2} </output>',
        '<think> r </think> <output> {"x": NaN, "y": 0.5, "width": 0.2, "height": 0.2} </output>',
    ],
)
def test_score_completion_zero_task_score(completion):
    assert score_completion("affordance", completion, answer(BOX)).task_score == 0.0


def test_null_output_scores_zero():
    result = score_completion("affordance", "<think> r </think> <output>null</output>", answer(BOX))
    assert (result.score, result.format, result.task_score) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("task", "output"),
    [
        ("affordance", '{"x": Infinity, "y": 0.5, "width": Infinity, "height": 0.2}'),  # inf − inf corner
        ("affordance", '{"x": 0.5, "y": -Infinity, "width": 0.2, "height": 0.2}'),
        ("affordance", '{"x": 1.7e308, "y": 0.5, "width": 1.7e308, "height": 0.2}'),  # a corner overflows
        ("affordance", '{"x": 0.5, "y": 0.5, "width": 1e999, "height": 0.2}'),  # json.loads gives inf
        ("trajectory", "[[0.2, 0.5], [Infinity, 0.5], [0.8, 0.5]]"),
        ("trajectory", "[[0.2, 0.5], [0.5, 0.5], [0.8, NaN]]"),
    ],
)
def test_any_non_finite_value_gives_task_score_zero(task, output):
    reference = answer(BOX if task == "affordance" else PATH)
    result = score_completion(task, f"<think> r </think> <output>{output}</output>", reference)
    assert result.task_score == 0.0 and result.format == 1.0


def test_huge_but_finite_box_still_scores():
    huge = '{"x": 0.5, "y": 0.5, "width": 1e300, "height": 1e300}'  # corners finite, clipped to the image
    assert score_completion("affordance", f"<think>r</think><output>{huge}</output>", answer(BOX)).task_score > 0.0


def test_score_completion_trajectory_edge_cases():
    assert score_completion("trajectory", "<think>r</think><output>[]</output>", answer(PATH)).score == 0.1
    # the reference converts with float(): numeric strings count
    as_strings = '<think>r</think><output>[["0.2", "0.5"], ["0.5", 0.5], [0.8, 0.5]]</output>'
    assert score_completion("trajectory", as_strings, answer(PATH)).score == 1.0


@pytest.mark.parametrize(
    ("task", "ground_truth", "error"),
    [
        ("grasp", answer(BOX), ValueError),
        ("affordance", "no output", ValueError),
        ("affordance", answer(PATH), ValueError),
        ("trajectory", answer(BOX), ValueError),
        ("trajectory", "<output>[]</output>", ValueError),
        ("affordance", None, TypeError),
    ],
)
def test_score_completion_rejects_bad_ground_truth(task, ground_truth, error):
    with pytest.raises(error):
        score_completion(task, answer(BOX), ground_truth)


@settings(max_examples=150, deadline=None)
@given(completion=st.text(max_size=60) | st.builds(answer, st.lists(st.tuples(_coordinate, _coordinate), max_size=5)))
def test_total_reward_in_unit_interval(completion):
    result = score_completion("trajectory", completion, answer(PATH))
    assert 0.0 <= result.score <= 1.0 and result.format in (0.0, 1.0) and 0.0 <= result.task_score <= 1.0
