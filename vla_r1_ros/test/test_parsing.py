"""Parser: what real models emit is tolerated, the rest rejected precisely, nothing ever raises."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_r1_ros.core.parsing import (
    NO_JSON,
    ParsedAnswer,
    box_to_pixels,
    format_reward,
    parse_answer,
    strict_output_json,
    waypoints_to_pixels,
)

BOX_JSON = '{"x": 0.5, "y": 0.5, "width": 0.2, "height": 0.2}'
PATH_JSON = "[[0.1, 0.2], [0.4, 0.5], [0.6, 0.9]]"


def answer(output: str, reasoning: str = "the handle faces right") -> str:
    return f"<think> {reasoning} </think> so, the answer is <output> {output} </output>"


def test_official_box_answer():
    parsed = parse_answer(answer(BOX_JSON), "affordance")
    assert parsed == ParsedAnswer(
        task="affordance", ok=True, reasoning="the handle faces right", box=(0.5, 0.5, 0.2, 0.2), format_reward=1.0
    )


def test_official_trajectory_answer():
    parsed = parse_answer(answer(PATH_JSON), "trajectory")
    assert parsed.ok and parsed.error is None and parsed.box is None
    assert parsed.waypoints == ((0.1, 0.2), (0.4, 0.5), (0.6, 0.9))
    assert parsed.format_reward == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "\n\n  <think>\n the handle faces right \n</think>\n\nso, the answer is <output>\n"
        + BOX_JSON
        + "\n</output>\n",
        "Sure! <think> the handle faces right </think> Therefore <output>" + BOX_JSON + "</output> Hope this helps.",
        "<THINK> the handle faces right </Think> so, the answer is <OUTPUT>" + BOX_JSON + "</Output>",
        "< think > the handle faces right </ think > < output >" + BOX_JSON + "< / output >",
        answer("{'x': 0.5, 'y': 0.5, 'width': 0.2, 'height': 0.2}"),
        answer('{"x": 0.5, "y": 0.5, "width": 0.2, "height": 0.2,}'),
        answer("```json\n" + BOX_JSON + "\n```"),
        answer("```\n{'x': 0.5, 'y': 0.5, 'width': 0.2, 'height': 0.2, }\n```"),
        answer('{"x": 0.5, "y": 0.5, "width": 0.2, "height": 0.2, "label": "mug"}'),  # extra keys are ignored
    ],
)
def test_tolerated_variants(text):
    parsed = parse_answer(text, "affordance")
    assert parsed.ok, parsed.error
    assert parsed.box == (0.5, 0.5, 0.2, 0.2)
    assert parsed.reasoning == "the handle faces right"


def test_trajectory_with_trailing_commas_and_single_quotes():
    parsed = parse_answer(answer("[[0.1, 0.2], [0.4, 0.5],]"), "trajectory")
    assert parsed.ok and parsed.waypoints == ((0.1, 0.2), (0.4, 0.5))


def test_reasoning_is_optional():
    parsed = parse_answer("<output>" + PATH_JSON + "</output>", "trajectory")
    assert parsed.ok and parsed.reasoning is None and parsed.format_reward == 0.0


def test_values_slightly_outside_are_clipped():
    parsed = parse_answer(answer("[[-0.02, 1.015], [1.0, 0.0]]"), "trajectory")
    assert parsed.ok and parsed.waypoints == ((0.0, 1.0), (1.0, 0.0))


@pytest.mark.parametrize(
    ("text", "task", "error"),
    [
        ("no tags at all", "affordance", "no <output> tag"),
        ("<think> x </think> <output> [[0.1, 0.2], [0.3", "trajectory", "<output> is not closed by </output>"),
        (answer(""), "trajectory", "<output> is empty"),
        (answer("[[0.1, 0.2], [0.3, 0.4]"), "trajectory", "<output> is not JSON (Expecting ',' delimiter at char"),
        (answer('{"x": 0.5, "y": 0.5, "width": 0.2}'), "affordance", "box is missing key(s) height (has: x, y, width)"),
        (answer("{}"), "affordance", "box is missing key(s) x, y, width, height (has: none)"),
        (answer(BOX_JSON.replace("0.2,", "1.3,")), "affordance", "box width = 1.3 is outside [0, 1] (tolerance 0.02)"),
        (answer(BOX_JSON.replace('"x": 0.5', '"x": "0.5"')), "affordance", 'box x is not a number: "0.5"'),
        (answer(BOX_JSON.replace('"x": 0.5', '"x": NaN')), "affordance", "box x is not finite: nan"),
        (
            answer(PATH_JSON),
            "affordance",
            "expected a box object {x, y, width, height} for task affordance, got a list",
        ),
        (answer(BOX_JSON), "trajectory", "expected a list of [x, y] waypoints for task trajectory, got an object"),
        (answer("[0.1, 0.2]"), "trajectory", "expected a list of [x, y] pairs, got a flat list of 2 numbers"),
        (answer("[[0.1, 0.2]]"), "trajectory", "trajectory needs at least 2 waypoints, got 1"),
        (answer("[[0.1, 0.2], [0.3, 0.4, 0.5]]"), "trajectory", "waypoint 1 is not an [x, y] pair: [0.3, 0.4, 0.5]"),
        (answer("[[0.1, 0.2], [0.3, -0.5]]"), "trajectory", "waypoint 1 y = -0.5 is outside [0, 1]"),
        (answer("[[0.1, 0.2], [Infinity, 0.5]]"), "trajectory", "waypoint 1 x is not finite: inf"),
        (answer("[[0.1, 0.2], [true, 0.5]]"), "trajectory", "waypoint 1 x is not a number: true"),
        (answer('"a string"'), "trajectory", "expected a list of [x, y] waypoints, got str"),
    ],
)
def test_precise_errors(text, task, error):
    parsed = parse_answer(text, task)
    assert not parsed.ok
    assert parsed.box is None and parsed.waypoints is None
    assert parsed.error.startswith(error), parsed.error


def test_failure_keeps_reasoning_and_format_reward():
    parsed = parse_answer(answer("[[0.1, 0.2]]"), "trajectory")
    assert not parsed.ok and parsed.reasoning == "the handle faces right" and parsed.format_reward == 1.0


@pytest.mark.parametrize(("text", "task"), [(None, "affordance"), (b"<output>[]</output>", "trajectory"), (3, "x")])
def test_bad_inputs_do_not_raise(text, task):
    parsed = parse_answer(text, task)
    assert not parsed.ok and parsed.error


def test_unknown_task():
    parsed = parse_answer(answer(BOX_JSON), "grasp")
    assert not parsed.ok and parsed.error == "unknown task 'grasp'; expected affordance or trajectory"


def test_format_reward_is_strict():
    assert format_reward(answer(BOX_JSON)) == 1.0
    assert format_reward("<THINK></THINK><OUTPUT>[1]</OUTPUT>") == 1.0  # tag case is ignored, empty think is fine
    assert format_reward(answer("{'x': 0.5}")) == 0.0  # single quotes: the parser accepts, the reward does not
    assert format_reward(answer("```json\n[[0.1, 0.2]]\n```")) == 0.0
    assert format_reward(answer("[[0.1, 0.2],]")) == 0.0
    assert format_reward("<output>" + BOX_JSON + "</output>") == 0.0  # no think
    assert format_reward("<think> x <output>" + BOX_JSON + "</output>") == 0.0  # unclosed think
    assert format_reward("<think>x</think><output>oops</output><output>[1]</output>") == 0.0  # first block counts
    assert format_reward(answer("NaN")) == 1.0  # json.loads accepts NaN; the reference does too
    assert format_reward(answer("null")) == 0.0  # the reference's failure marker is None
    assert format_reward(answer("[null]")) == 1.0  # only a bare null is the marker
    assert format_reward(None) == 0.0


def test_null_output_parses_to_format_zero():
    parsed = parse_answer(answer("null"), "affordance")
    assert not parsed.ok and parsed.format_reward == 0.0 and "NoneType" in parsed.error


def test_strict_output_json():
    assert strict_output_json(answer(PATH_JSON)) == json.loads(PATH_JSON)
    assert strict_output_json("<output> null </output>") is None
    assert strict_output_json("<output>{'x': 1}</output>") is NO_JSON
    assert strict_output_json("no output") is NO_JSON


def test_to_json_contract():
    parsed = parse_answer(answer(BOX_JSON), "affordance")
    assert parsed.to_json(640, 480) == {
        "ok": True,
        "task": "affordance",
        "reasoning": "the handle faces right",
        "box": {"x": 0.5, "y": 0.5, "width": 0.2, "height": 0.2},
        "box_px": [256.0, 192.0, 384.0, 288.0],
        "waypoints": None,
        "waypoints_px": None,
        "format_reward": 1,
        "error": None,
    }
    assert parsed.to_json()["box_px"] is None
    path = parse_answer(answer("[[0.5, 0.25], [1.0, 0.0]]"), "trajectory").to_json(640, 480)
    assert path["waypoints"] == [[0.5, 0.25], [1.0, 0.0]]
    assert path["waypoints_px"] == [[320.0, 120.0], [640.0, 0.0]]
    failed = parse_answer("nothing", "trajectory").to_json(640, 480)
    assert failed["ok"] is False and failed["waypoints_px"] is None and failed["error"] == "no <output> tag"


def test_pixel_conversion():
    assert box_to_pixels((0.5, 0.5, 0.2, 0.2), 640, 480) == pytest.approx((256, 192, 384, 288))
    # A box reaching past the border is clipped to the image.
    assert box_to_pixels((0.95, 0.05, 0.2, 0.2), 640, 480) == pytest.approx((544, 0, 640, 72))
    pixels = waypoints_to_pixels(((0.0, 0.0), (0.5, 1.0)), 640, 480)
    assert pixels.shape == (2, 2)
    np.testing.assert_allclose(pixels, [[0, 0], [320, 480]])


# Text built from the pieces answers are made of, so the generator reaches the deep branches.
_PIECES = [
    *("<think>", "</think>", "<output>", "</output>", "< OUTPUT >", "```json\n", "```", "{", "}", "[", "]", ",", ":"),
    *("'", '"', '"x"', '"width"', "0.5", "1.01", "-3", "NaN", "Infinity", "1e999", "true", "null", " ", "\n"),
]
_answer_like = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=5)), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(), _answer_like), task=st.sampled_from(["affordance", "trajectory"]))
def test_parser_never_raises(text, task):
    parsed = parse_answer(text, task)
    assert parsed.ok == (parsed.error is None)
    assert parsed.format_reward in (0.0, 1.0)
    if parsed.ok:
        values = parsed.box if task == "affordance" else [v for point in parsed.waypoints for v in point]
        assert all(0.0 <= v <= 1.0 for v in values)
    json.dumps(parsed.to_json(640, 480), allow_nan=False)  # the CLI output is always valid JSON


@settings(max_examples=150, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=4),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=5),
        max_leaves=12,
    ),
    task=st.sampled_from(["affordance", "trajectory"]),
)
def test_parser_never_raises_on_any_json_value(value, task):
    parsed = parse_answer(answer(json.dumps(value)), task)
    assert parsed.ok == (parsed.error is None)
