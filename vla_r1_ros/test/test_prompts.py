"""Prompts and the answer writer: verbatim suffixes, the official chat message, `format_answer`."""

from __future__ import annotations

import numpy as np
import pytest

from vla_r1_ros.core.parsing import parse_answer
from vla_r1_ros.core.prompts import (
    AFFORDANCE,
    PROMPT_SUFFIXES,
    TASKS,
    TRAJECTORY,
    build_messages,
    build_prompt,
    format_answer,
)

# Copied character for character from the official scripts/inference.py (aff_form, traj_form).
OFFICIAL_AFFORDANCE = (
    " Please output the 2D affordance region define by bounding box of the object in the format "
    '<output>{"x": value, "y": value, "width": value, "height": value}</output>.\n<image>'
)
OFFICIAL_TRAJECTORY = (
    " Please output the optimal trajectory of the end-effector to the target object in the format "
    "<output>[[x1, y1], [x2, y2], ...]</output>.\n<image>"
)


def test_task_names():
    assert (AFFORDANCE, TRAJECTORY) == ("affordance", "trajectory")
    assert TASKS == (AFFORDANCE, TRAJECTORY)


def test_suffixes_are_verbatim():
    assert PROMPT_SUFFIXES[AFFORDANCE] == OFFICIAL_AFFORDANCE
    assert PROMPT_SUFFIXES[TRAJECTORY] == OFFICIAL_TRAJECTORY


def test_build_prompt_appends_the_suffix():
    assert (
        build_prompt("put the red cube in the tray", AFFORDANCE) == "put the red cube in the tray" + OFFICIAL_AFFORDANCE
    )
    assert build_prompt("  pick the mug \n", TRAJECTORY) == "pick the mug" + OFFICIAL_TRAJECTORY


def test_build_prompt_rejects_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'grasp'"):
        build_prompt("pick the mug", "grasp")


def test_build_messages_is_one_user_message_text_then_image():
    image = object()
    messages = build_messages("pick the mug", TRAJECTORY, image)
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": " pick the mug" + OFFICIAL_TRAJECTORY},
                {"type": "image", "image": image},
            ],
        }
    ]
    assert build_messages("pick the mug", AFFORDANCE)[0]["content"][1] == {"type": "image", "image": None}


def test_format_answer_box_exact_text():
    text = format_answer(" the mug's handle ", {"x": 0.5637491, "y": 0.638217, "width": 0.094696, "height": 0.123233})
    assert text == (
        "<think> the mug's handle </think> so, the answer is <output> "
        '{"x": 0.563749, "y": 0.638217, "width": 0.094696, "height": 0.123233} </output>'
    )


def test_format_answer_box_from_tuple_and_trajectory_from_array():
    assert format_answer("r", (0.5, 0.25, 0.1, 0.2)).endswith(
        '<output> {"x": 0.5, "y": 0.25, "width": 0.1, "height": 0.2} </output>'
    )
    text = format_answer("r", np.array([[0.1, 0.2], [1 / 3, 0.4]]))
    assert text == "<think> r </think> so, the answer is <output> [[0.1, 0.2], [0.333333, 0.4]] </output>"


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"x": 0.5, "y": 0.5, "width": 0.1}, "missing key"),
        ({"x": float("nan"), "y": 0.5, "width": 0.1, "height": 0.1}, "not finite"),
        ([[0.1, 0.2], [0.3]], "waypoint 1"),
        ("[[0.1, 0.2]]", "must be a box"),
        (0.5, "must be a box"),
    ],
)
def test_format_answer_rejects_bad_output(output, message):
    with pytest.raises(ValueError, match=message):
        format_answer("r", output)


def test_format_answer_round_trips_through_the_parser():
    box = parse_answer(format_answer("r", (0.5, 0.25, 0.1, 0.2)), AFFORDANCE)
    assert box.ok and box.box == (0.5, 0.25, 0.1, 0.2) and box.format_reward == 1.0
    path = parse_answer(format_answer("r", [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]), TRAJECTORY)
    assert path.ok and path.waypoints == ((0.1, 0.2), (0.3, 0.4), (0.5, 0.6)) and path.reasoning == "r"
