"""VLA-R1's two task prompts, its chat message, and the writer of its answer format.

The suffixes are verbatim from the official code (scripts/inference.py, server.py), including the
model's own spelling "define" and the literal `<image>` placeholder the model was trained with. Anything
in this package that writes text in the model's answer format (scripted policy, dataset export) goes
through `format_answer`, so the parser and the rewards only ever see one format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

AFFORDANCE = "affordance"
TRAJECTORY = "trajectory"
TASKS = (AFFORDANCE, TRAJECTORY)

PROMPT_SUFFIXES: dict[str, str] = {
    AFFORDANCE: (
        " Please output the 2D affordance region define by bounding box of the object in the format"
        ' <output>{"x": value, "y": value, "width": value, "height": value}</output>.\n<image>'
    ),
    TRAJECTORY: (
        " Please output the optimal trajectory of the end-effector to the target object in the format"
        " <output>[[x1, y1], [x2, y2], ...]</output>.\n<image>"
    ),
}

BOX_KEYS = ("x", "y", "width", "height")

# The dataset's answers carry 6 decimals (e.g. {"x": 0.563749, ...}).
ANSWER_DECIMALS = 6


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def build_prompt(instruction: str, task: str) -> str:
    """The instruction followed by the task's verbatim suffix (the dataset's `instruction + suffix`)."""
    _check_task(task)
    return instruction.strip() + PROMPT_SUFFIXES[task]


def build_messages(instruction: str, task: str, image: Any = None) -> list[dict]:
    """The official chat: one user message, text (with a leading space, as the official client sends
    it) before the image, and no system message. `image` is whatever `qwen_vl_utils` accepts (PIL
    image, path, URL); None leaves the slot for the caller to fill."""
    text = " " + build_prompt(instruction, task)
    return [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "image": image}]}]


def _finite_rounded(value: Any, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} is not finite: {number}")
    return round(number, ANSWER_DECIMALS)


def _output_json(output: Any) -> str:
    """JSON of a box (mapping with x, y, width, height, or a (cx, cy, w, h) sequence) or of a
    trajectory (sequence of (x, y) pairs, e.g. an (N, 2) array)."""
    if isinstance(output, Mapping):
        missing = [key for key in BOX_KEYS if key not in output]
        if missing:
            raise ValueError(f"box is missing key(s) {', '.join(missing)}")
        return json.dumps({key: _finite_rounded(output[key], f"box {key}") for key in BOX_KEYS})
    if isinstance(output, str | bytes) or not hasattr(output, "__len__"):
        raise ValueError(f"output must be a box or a list of [x, y] pairs, got {type(output).__name__}")
    items = list(output)
    if len(items) == len(BOX_KEYS) and all(not hasattr(item, "__len__") for item in items):
        return json.dumps({key: _finite_rounded(v, f"box {key}") for key, v in zip(BOX_KEYS, items, strict=True)})
    waypoints = []
    for index, point in enumerate(items):
        if not hasattr(point, "__len__") or len(point) != 2:
            raise ValueError(f"waypoint {index} is not an [x, y] pair: {point!r}")
        waypoints.append([_finite_rounded(coordinate, f"waypoint {index}") for coordinate in point])
    return json.dumps(waypoints)


def format_answer(reasoning: str, output: Any) -> str:
    """The model's answer text: `<think> … </think> so, the answer is <output> JSON </output>`.

    `output` is a box — a mapping with keys x, y, width, height or a (cx, cy, w, h) sequence, normalized
    centre format — or a trajectory, a sequence of normalized (x, y) pairs. Floats are rounded to 6
    decimals as in the dataset. Raises ValueError for anything else (this writes training data; a bad
    value must not slip through).
    """
    return f"<think> {reasoning.strip()} </think> so, the answer is <output> {_output_json(output)} </output>"
