"""`core.prediction.Prediction`: one type from parsing to disk, derived from the raw texts only."""

from __future__ import annotations

import numpy as np
import pytest

from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.prompts import format_answer

TASKS = ("affordance", "trajectory")
BOX = {"x": 0.5013, "y": 0.25, "width": 0.1, "height": 0.2}
PATH = [[0.1, 0.2], [0.30007, 0.4]]


def answers():
    return (format_answer("the cube", BOX), format_answer("to the tray", PATH))


def test_everything_is_derived_from_the_texts_and_pixels_are_never_rounded():
    p = Prediction("put the red cube in the tray", TASKS, answers(), (640, 480), "scripted:test", 0.25)
    assert p.valid and p.error == "" and p.format_reward == 1.0
    assert p.box == pytest.approx((0.5013, 0.25, 0.1, 0.2))
    assert p.box_px == pytest.approx((288.832, 72.0, 352.832, 168.0))  # sub-pixel corners kept
    np.testing.assert_allclose(p.waypoints_px, [[64.0, 96.0], [192.0448, 192.0]])
    assert p.reasoning == {"affordance": "the cube", "trajectory": "to the tray"}


def test_an_answer_that_does_not_parse_makes_it_invalid_with_the_reason():
    p = Prediction("x", TASKS, (answers()[0], "<think>hm</think> <output>[[2, 0]]</output>"), (640, 480))
    assert not p.valid and p.error.startswith("trajectory: ") and p.box is not None and p.waypoints is None
    with pytest.raises(ValueError, match="2 tasks but 1 answer texts"):
        Prediction("x", TASKS, ("only one",), (640, 480))


def test_a_failed_policy_has_no_answers():
    p = Prediction.failed("x", TASKS, "policy failed: RuntimeError: CUDA out of memory", (640, 480), "vla_r1:m")
    assert not p.valid and p.error == p.policy_error and p.answers == () and p.format_reward == 0.0
    assert p.raw_texts == ("", "")


def test_json_round_trip():
    p = Prediction("x", TASKS, answers(), (640, 480), "scripted:test", 0.25)
    document = p.to_json()
    assert document["parsed"]["box_px"] == pytest.approx([288.832, 72.0, 352.832, 168.0])
    assert Prediction.from_json(document) == p
