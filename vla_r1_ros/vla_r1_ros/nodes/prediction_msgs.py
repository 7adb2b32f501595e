"""VlaPrediction <-> `core.prediction.Prediction` (the ROS adapter; the one place that converts).

What a `VlaPrediction` carries:
- `header`: stamp and frame_id of the colour image the policy saw.
- `instruction`, `model_id` ("vla_r1:<checkpoint>", "scripted:simulator-expert(...)"), `image_width`,
  `image_height`, `tasks`, `raw_texts` (the policy's text per task), `inference_latency_s`,
  `policy_error` (why the policy gave no answer; "" when it answered).
- Derived by parsing, for viewers (RViz, `ros2 topic echo`): `reasoning_*`, `has_box` / `box_normalized`
  (cx, cy, w, h), `has_waypoints` / `waypoints_normalized` (x0, y0, x1, y1, ...), `valid`, `error`,
  `format_reward`. `prediction_from_msg` ignores them: it re-parses `raw_texts` with the parser's
  contract, so nothing a publisher claims about validity or coordinates is trusted.
"""

from __future__ import annotations

from builtin_interfaces.msg import Time
from vla_r1_interfaces.msg import VlaPrediction

from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.prompts import AFFORDANCE, TRAJECTORY


def prediction_msg(prediction: Prediction, stamp: Time, frame_id: str) -> VlaPrediction:
    msg = VlaPrediction()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.instruction = prediction.instruction
    msg.model_id = prediction.model_id
    msg.image_width, msg.image_height = prediction.image_size
    msg.tasks = list(prediction.tasks)
    msg.raw_texts = list(prediction.raw_texts)
    msg.inference_latency_s = float(prediction.latency_s)
    msg.policy_error = prediction.policy_error
    reasoning = prediction.reasoning
    msg.reasoning_affordance = reasoning.get(AFFORDANCE, "")
    msg.reasoning_trajectory = reasoning.get(TRAJECTORY, "")
    if prediction.box is not None:
        msg.has_box, msg.box_normalized = True, [float(v) for v in prediction.box]
    if prediction.waypoints is not None:
        msg.has_waypoints = True
        msg.waypoints_normalized = [float(v) for v in prediction.waypoints.reshape(-1)]
    msg.valid, msg.error = prediction.valid, prediction.error
    msg.format_reward = prediction.format_reward
    return msg


def prediction_from_msg(msg: VlaPrediction) -> Prediction:
    """The Prediction a message stands for, re-parsed from its raw texts. A message whose texts do not
    match its tasks is a prediction with a policy error, never an exception."""
    tasks, texts = tuple(msg.tasks), tuple(msg.raw_texts)
    size = (int(msg.image_width), int(msg.image_height))
    if len(texts) != len(tasks):
        error = f"malformed VlaPrediction: {len(tasks)} tasks but {len(texts)} raw texts"
        return Prediction.failed(msg.instruction, tasks, error, size, msg.model_id)
    return Prediction(
        instruction=msg.instruction,
        tasks=tasks,
        raw_texts=texts,
        image_size=size,
        model_id=msg.model_id,
        latency_s=float(msg.inference_latency_s),
        policy_error=msg.policy_error,
    )
