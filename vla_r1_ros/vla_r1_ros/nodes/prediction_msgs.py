"""VlaPrediction <-> Python: build the message from parsed answers, and read it back.

What the inference node fills in a `VlaPrediction` (the planning node and the reward logger read it):
- `header`: stamp and frame_id of the colour image the policy saw (or the node's clock and "" when no
  image was available). The planning node matches the aligned depth frame by this stamp.
- `instruction`, `model_id` ("vla_r1:<checkpoint>" or "scripted:simulator-expert(noise=...)"),
  `image_width`, `image_height` (0 when there was no image).
- `tasks`, `raw_texts`: the tasks answered, in order, and the policy's raw text for each (empty texts
  when the policy never ran). `reasoning_affordance`, `reasoning_trajectory`: the <think> content.
- `has_box`, `box_normalized` (cx, cy, w, h in [0, 1]), `box_px` (RegionOfInterest: x_offset, y_offset,
  width, height in pixels, rounded, clipped to the image) — from the affordance answer when it parsed.
- `has_waypoints`, `waypoints_normalized` (x0, y0, x1, y1, ...), `waypoints_px` (Point x, y in pixels,
  z = 0) — from the trajectory answer when it parsed.
- `valid`: every requested task parsed. `error`: "" when valid, else "<task>: <parser error>" joined by
  "; ", or the reason the policy did not run (no frame, stale frame, not ready, policy failure).
- `format_reward`: mean VLA-R1 format reward (0/1 each) over the answers; 0 when nothing was answered.
- `inference_latency_s`: wall-clock seconds of the policy call (0 when it did not run).
A box or waypoints may be present while `valid` is false (the other task failed): check `has_*`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from sensor_msgs.msg import RegionOfInterest
from vla_r1_interfaces.msg import VlaPrediction

from vla_r1_ros.core.parsing import ParsedAnswer, box_to_pixels, waypoints_to_pixels
from vla_r1_ros.core.prompts import AFFORDANCE, TRAJECTORY
from vla_r1_ros.nodes.conversions import stamp_to_ns


@dataclass(frozen=True)
class PredictionData:
    """A VlaPrediction as plain Python (`prediction_from_msg`)."""

    stamp_ns: int
    frame_id: str
    instruction: str
    model_id: str
    image_size: tuple[int, int]  # (width, height)
    tasks: tuple[str, ...]
    raw_texts: tuple[str, ...]
    reasoning: dict[str, str]  # task -> <think> text ("" when absent)
    box: tuple[float, float, float, float] | None  # normalized centre box (cx, cy, w, h)
    box_px: tuple[int, int, int, int] | None  # pixel corners (x1, y1, x2, y2), right/bottom exclusive
    waypoints: np.ndarray | None  # (N, 2) normalized
    waypoints_px: np.ndarray | None  # (N, 2) pixels
    valid: bool
    error: str
    format_reward: float
    latency_s: float


def box_roi(box: Sequence[float], width: int, height: int) -> RegionOfInterest:
    """Normalized centre box -> RegionOfInterest in pixels (corners rounded, clipped to the image)."""
    x1, y1, x2, y2 = (round(v) for v in box_to_pixels(box, width, height))
    return RegionOfInterest(x_offset=x1, y_offset=y1, width=max(0, x2 - x1), height=max(0, y2 - y1))


def prediction_msg(
    *,
    stamp: Time,
    frame_id: str,
    instruction: str,
    model_id: str,
    image_size: tuple[int, int],
    tasks: Sequence[str],
    raw_texts: Sequence[str] = (),
    parsed: Sequence[ParsedAnswer] = (),
    latency_s: float = 0.0,
    error: str = "",
) -> VlaPrediction:
    """Build a VlaPrediction. With `error` (the policy did not run) it is invalid whatever `parsed` says."""
    width, height = image_size
    msg = VlaPrediction()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.instruction = instruction
    msg.model_id = model_id
    msg.image_width, msg.image_height = int(width), int(height)
    msg.tasks = list(tasks)
    msg.raw_texts = list(raw_texts) if raw_texts else [""] * len(msg.tasks)
    msg.inference_latency_s = float(latency_s)

    by_task = {answer.task: answer for answer in parsed}
    if AFFORDANCE in by_task:
        answer = by_task[AFFORDANCE]
        msg.reasoning_affordance = answer.reasoning or ""
        if answer.ok and answer.box is not None:
            msg.has_box = True
            msg.box_normalized = [float(v) for v in answer.box]
            msg.box_px = box_roi(answer.box, width, height)
    if TRAJECTORY in by_task:
        answer = by_task[TRAJECTORY]
        msg.reasoning_trajectory = answer.reasoning or ""
        if answer.ok and answer.waypoints is not None:
            msg.has_waypoints = True
            msg.waypoints_normalized = [float(v) for point in answer.waypoints for v in point]
            msg.waypoints_px = [
                Point(x=float(u), y=float(v), z=0.0) for u, v in waypoints_to_pixels(answer.waypoints, width, height)
            ]

    failures = [f"{answer.task}: {answer.error}" for answer in parsed if not answer.ok]
    if error:
        msg.error = error
    elif not parsed:
        msg.error = "no task was answered"
    else:
        msg.error = "; ".join(failures)
    msg.valid = not msg.error
    msg.format_reward = float(np.mean([a.format_reward for a in parsed])) if parsed else 0.0
    return msg


def prediction_from_msg(msg: VlaPrediction) -> PredictionData:
    """A VlaPrediction as plain Python: normalized and pixel box / waypoints (None when absent)."""
    box = tuple(float(v) for v in msg.box_normalized) if msg.has_box else None
    roi = msg.box_px
    waypoints = np.asarray(msg.waypoints_normalized, dtype=float).reshape(-1, 2) if msg.has_waypoints else None
    return PredictionData(
        stamp_ns=stamp_to_ns(msg.header.stamp),
        frame_id=msg.header.frame_id,
        instruction=msg.instruction,
        model_id=msg.model_id,
        image_size=(int(msg.image_width), int(msg.image_height)),
        tasks=tuple(msg.tasks),
        raw_texts=tuple(msg.raw_texts),
        reasoning={AFFORDANCE: msg.reasoning_affordance, TRAJECTORY: msg.reasoning_trajectory},
        box=box,
        box_px=(roi.x_offset, roi.y_offset, roi.x_offset + roi.width, roi.y_offset + roi.height)
        if msg.has_box
        else None,
        waypoints=waypoints,
        waypoints_px=np.array([[p.x, p.y] for p in msg.waypoints_px], dtype=float) if msg.has_waypoints else None,
        valid=bool(msg.valid),
        error=msg.error,
        format_reward=float(msg.format_reward),
        latency_s=float(msg.inference_latency_s),
    )
