"""VLA-R1 answer text → structured result (`parse_answer`), and the strict format reward.

Two readers of the same text, on purpose:
- the strict one (`strict_output_json`, `format_reward`) is the reference's: first `<output>…</output>`,
  content through `json.loads` and nothing else. Rewards must follow it exactly, so a model is never
  paid for sloppy output.
- the lenient one (`parse_answer`) is what the robot and the evaluator use: it tolerates what real
  models emit (whitespace, text around tags, tag case and inner spaces, single quotes, trailing commas,
  a code fence inside `<output>`, values up to 0.02 outside [0, 1]) and rejects the rest with a precise
  error. It never raises.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_r1_ros.core.prompts import AFFORDANCE, BOX_KEYS, TASKS, TRAJECTORY

# Values this far outside [0, 1] are clipped (models overshoot the border slightly); further is an error.
RANGE_TOLERANCE = 0.02

# Strict (reference) tags. The reference's patterns are `<think>\s*.*?\s*</think>` and
# `<output>\s*(.*?)\s*</output>` (DOTALL, IGNORECASE) with the content stripped; finding the first
# opening tag and then the first closing tag after it selects the same text in linear time (the `\s*`
# around a lazy `.*?` only backtracks).
_STRICT_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_STRICT_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_STRICT_OUTPUT_OPEN = re.compile(r"<output>", re.IGNORECASE)
_STRICT_OUTPUT_CLOSE = re.compile(r"</output>", re.IGNORECASE)

# Lenient tags: any case, spaces inside the brackets.
_THINK_OPEN = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
_OUTPUT_OPEN = re.compile(r"<\s*output\s*>", re.IGNORECASE)
_OUTPUT_CLOSE = re.compile(r"<\s*/\s*output\s*>", re.IGNORECASE)
_CODE_FENCE = re.compile(r"\A```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)\n?[ \t]*```\Z", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")

_SNIPPET_CHARS = 80


def _tag_block(text: str, opening: re.Pattern, closing: re.Pattern) -> tuple[str | None, str | None]:
    """(content between the first opening tag and the first closing tag after it, problem)."""
    start = opening.search(text)
    if start is None:
        return None, "missing"
    end = closing.search(text, start.end())
    if end is None:
        return None, "unclosed"
    return text[start.end() : end.start()], None


# Returned by `strict_output_json` when there is no JSON (None is a valid JSON value: `null`).
NO_JSON = object()


def strict_output_json(text: str) -> Any:
    """The reference's `_extract_output`: `json.loads` of the first `<output>` block's stripped content,
    or `NO_JSON` when there is no block or it is not JSON (NaN/Infinity literals pass, as in json.loads)."""
    content, _ = _tag_block(text, _STRICT_OUTPUT_OPEN, _STRICT_OUTPUT_CLOSE)
    if content is None:
        return NO_JSON
    try:
        return json.loads(content.strip())
    except (ValueError, RecursionError):
        return NO_JSON


def format_reward(text: Any) -> float:
    """1.0 when the text has a `<think>…</think>` block AND an `<output>` whose content is JSON other than
    `null`, else 0.0 (the reference's format reward, strict: no lenient fixes; the reference uses None
    as its failure marker, so `<output>null</output>` earns 0)."""
    if not isinstance(text, str) or not text:
        return 0.0
    think, _ = _tag_block(text, _STRICT_THINK_OPEN, _STRICT_THINK_CLOSE)
    output = strict_output_json(text)
    return 1.0 if think is not None and output is not NO_JSON and output is not None else 0.0


@dataclass(frozen=True)
class ParsedAnswer:
    """One parsed answer. `box` is normalized centre format (cx, cy, w, h); `waypoints` normalized (x, y)."""

    task: str
    ok: bool
    reasoning: str | None = None
    box: tuple[float, float, float, float] | None = None
    waypoints: tuple[tuple[float, float], ...] | None = None
    format_reward: float = 0.0
    error: str | None = None

    def to_json(self, width: float | None = None, height: float | None = None) -> dict:
        """The `vla-r1 parse` object. Pixel fields need both `width` and `height`, else they are null."""
        with_pixels = width is not None and height is not None
        box = dict(zip(BOX_KEYS, self.box, strict=True)) if self.box is not None else None
        box_px = list(box_to_pixels(self.box, width, height)) if self.box is not None and with_pixels else None
        waypoints = [list(point) for point in self.waypoints] if self.waypoints is not None else None
        waypoints_px = (
            waypoints_to_pixels(self.waypoints, width, height).tolist()
            if self.waypoints is not None and with_pixels
            else None
        )
        return {
            "ok": self.ok,
            "task": self.task,
            "reasoning": self.reasoning,
            "box": box,
            "box_px": box_px,
            "waypoints": waypoints,
            "waypoints_px": waypoints_px,
            "format_reward": int(self.format_reward),
            "error": self.error,
        }


def box_to_pixels(box: tuple[float, float, float, float], width: float, height: float) -> tuple[float, ...]:
    """Normalized centre box (cx, cy, w, h) → pixel corners (x1, y1, x2, y2), clipped to the image."""
    cx, cy, w, h = (float(value) for value in box)
    x1, x2 = (cx - abs(w) / 2.0) * width, (cx + abs(w) / 2.0) * width
    y1, y2 = (cy - abs(h) / 2.0) * height, (cy + abs(h) / 2.0) * height
    return (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )


def waypoints_to_pixels(waypoints: Any, width: float, height: float) -> np.ndarray:
    """Normalized (x, y) waypoints → (N, 2) float pixel coordinates."""
    return np.asarray(waypoints, dtype=float).reshape(-1, 2) * np.array([width, height], dtype=float)


class _Invalid(ValueError):
    """An answer that does not validate; the message is the user-facing error."""


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 1] + "…"


def _decode_output(content: str) -> Any:
    """JSON from the `<output>` content: strict first, then with a code fence removed, single quotes
    turned into double quotes and trailing commas dropped (answers hold only numbers and the box keys,
    so these rewrites cannot change a value)."""
    text = content.strip()
    fenced = _CODE_FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        raise _Invalid("<output> is empty")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    repaired = _TRAILING_COMMA.sub(r"\1", text.replace("'", '"'))
    try:
        return json.loads(repaired)
    except json.JSONDecodeError as exc:
        raise _Invalid(f"<output> is not JSON ({exc.msg} at char {exc.pos}): {_snippet(text)!r}") from None
    except (ValueError, RecursionError) as exc:
        raise _Invalid(f"<output> is not usable JSON ({type(exc).__name__}): {_snippet(text)!r}") from None


def _in_unit_range(value: Any, name: str) -> float:
    """A finite number in [0, 1]; values up to RANGE_TOLERANCE outside are clipped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{name} is not a number: {_snippet(json.dumps(value))}")
    number = float(value)
    if not math.isfinite(number):
        raise _Invalid(f"{name} is not finite: {number}")
    if number < -RANGE_TOLERANCE or number > 1.0 + RANGE_TOLERANCE:
        raise _Invalid(f"{name} = {number:g} is outside [0, 1] (tolerance {RANGE_TOLERANCE:g})")
    return min(max(number, 0.0), 1.0)


def _validate_box(value: Any) -> tuple[float, float, float, float]:
    if isinstance(value, list):
        raise _Invalid("expected a box object {x, y, width, height} for task affordance, got a list")
    if not isinstance(value, dict):
        raise _Invalid(f"expected a box object {{x, y, width, height}}, got {type(value).__name__}")
    missing = [key for key in BOX_KEYS if key not in value]
    if missing:
        raise _Invalid(f"box is missing key(s) {', '.join(missing)} (has: {', '.join(map(str, value)) or 'none'})")
    cx, cy, w, h = (_in_unit_range(value[key], f"box {key}") for key in BOX_KEYS)
    return (cx, cy, w, h)


def _validate_waypoints(value: Any) -> tuple[tuple[float, float], ...]:
    if isinstance(value, dict):
        raise _Invalid("expected a list of [x, y] waypoints for task trajectory, got an object")
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of [x, y] waypoints, got {type(value).__name__}")
    if value and all(isinstance(item, int | float) and not isinstance(item, bool) for item in value):
        raise _Invalid(f"expected a list of [x, y] pairs, got a flat list of {len(value)} numbers")
    if len(value) < 2:
        raise _Invalid(f"trajectory needs at least 2 waypoints, got {len(value)}")
    waypoints = []
    for index, point in enumerate(value):
        if not isinstance(point, list) or len(point) != 2:
            raise _Invalid(f"waypoint {index} is not an [x, y] pair: {_snippet(json.dumps(point))}")
        waypoints.append(
            (_in_unit_range(point[0], f"waypoint {index} x"), _in_unit_range(point[1], f"waypoint {index} y"))
        )
    return tuple(waypoints)


def _parse(text: str, task: str) -> ParsedAnswer:
    reward = format_reward(text)
    think, _ = _tag_block(text, _THINK_OPEN, _THINK_CLOSE)
    reasoning = think.strip() if think is not None else None

    def failure(message: str) -> ParsedAnswer:
        return ParsedAnswer(task=task, ok=False, reasoning=reasoning, format_reward=reward, error=message)

    content, problem = _tag_block(text, _OUTPUT_OPEN, _OUTPUT_CLOSE)
    if content is None:
        return failure("no <output> tag" if problem == "missing" else "<output> is not closed by </output>")
    try:
        value = _decode_output(content)
        if task == AFFORDANCE:
            return ParsedAnswer(task, True, reasoning, box=_validate_box(value), format_reward=reward)
        return ParsedAnswer(task, True, reasoning, waypoints=_validate_waypoints(value), format_reward=reward)
    except _Invalid as exc:
        return failure(str(exc))


def parse_answer(text: str, task: str) -> ParsedAnswer:
    """Parse a model answer for `task` ("affordance" or "trajectory"). Never raises: anything that does
    not parse, including a non-string input or an unknown task, comes back with ok=False and an error."""
    task_name = task if isinstance(task, str) else repr(task)
    if not isinstance(task, str) or task not in TASKS:
        return ParsedAnswer(
            task=task_name, ok=False, error=f"unknown task {task_name!r}; expected {AFFORDANCE} or {TRAJECTORY}"
        )
    if not isinstance(text, str):
        return ParsedAnswer(task=task, ok=False, error=f"answer is not a string but {type(text).__name__}")
    try:
        return _parse(text, task)
    except Exception as exc:  # the contract is "never raises"; a bug here must still not crash a robot
        return ParsedAnswer(task=task, ok=False, error=f"internal parser error: {type(exc).__name__}: {exc}")
