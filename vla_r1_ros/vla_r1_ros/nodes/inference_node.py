"""`inference_node`: runs a policy (VLA-R1, or the simulator-only scripted expert) on the newest frame.

Interfaces (docs/ARCHITECTURE.md):
- subscribes `camera/color/image_raw` (rgb8) and, for the scripted policy only, `workcell/scene`
  (simulator ground truth). Only the newest message of each is kept: depth-1 queues and a single
  slot, so frames never pile up behind a slow model. CameraInfo is not needed: the model works in
  normalized image coordinates, and pixels follow from the frame's own size.
- serves the action `vla_r1/predict` (Predict: feedback streams the answer text per task) and listens
  on `vla_r1/instruction` (std_msgs/String; both tasks). Both answer about the newest frame.
- publishes `vla_r1/prediction` (VlaPrediction; fields in nodes/prediction_msgs.py),
  `vla_r1/annotated_image` (the frame with box, numbered waypoints, reasoning) and `vla_r1/status`
  (transient local: "loading", "ready", "error: ...").
The policy loads once in a background thread so the executor keeps spinning (status, parameters)
while a 3B model loads; goals are rejected until it is ready. Every failure — no frame, stale frame,
policy error, malformed answer — ends in a VlaPrediction with valid=false and the reason, never a crash.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import asdict
from typing import Any

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String
from vla_r1_interfaces.action import Predict
from vla_r1_interfaces.msg import SceneState, VlaPrediction

from vla_r1_ros.core.annotate import annotate
from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.parsing import parse_answer
from vla_r1_ros.core.prompts import TASKS
from vla_r1_ros.nodes.conversions import image_to_numpy, numpy_to_image, stamp_to_ns
from vla_r1_ros.nodes.prediction_msgs import PredictionData, prediction_from_msg, prediction_msg
from vla_r1_ros.nodes.spin import spin_nodes
from vla_r1_ros.policies import make_policy
from vla_r1_ros.policies.base import Policy
from vla_r1_ros.policies.settings import OpenAISettings, TransformersSettings, backend_of, setting_names


class GenerationCancelled(Exception):
    """Raised from the streaming callback when the Predict goal was cancelled: it unwinds `generate`."""


class InferenceNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("inference", **kwargs)
        self.model_config = load_config("model")  # read once; the vla_r1 policy is built from it
        self.declare_parameter("policy", "scripted")  # "vla_r1" on a machine with the model
        # vla_r1: `backend` (transformers | openai) and every setting of both backends, defaults from
        # config/model.yaml (policies/settings.py validates them when the policy is built).
        self.declare_parameter("backend", backend_of(self.model_config))
        defaults = model_parameter_defaults(self.model_config)
        for name in setting_names():
            self.declare_parameter(name, defaults[name])
        self.declare_parameter("noise", "none")  # scripted policy: none | paper
        self.declare_parameter("max_frame_age_s", 1.0)
        self.declare_parameter("frame_wait_s", 3.0)  # how long a request waits for a frame newer than it

        self.policy_name = str(self.get_parameter("policy").value)
        self.max_frame_age_s = float(self.get_parameter("max_frame_age_s").value)
        self.frame_wait_s = float(self.get_parameter("frame_wait_s").value)
        self._lock = threading.Lock()  # guards the newest-message slots
        self._arrived = threading.Condition(self._lock)  # notified on every frame / scene
        self._predict_lock = threading.Lock()  # one prediction at a time: one model, one GPU
        self._image: Image | None = None
        self._scene_msg: SceneState | None = None
        self._state = "loading"
        self.policy: Policy | None = None

        sensors = MutuallyExclusiveCallbackGroup()
        requests = ReentrantCallbackGroup()
        # Keep last 1, reliable: the newest frame only (no backlog), and a 900 kB frame is not lost to one
        # dropped UDP fragment, which best effort loses about a third of across processes here.
        newest = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(Image, "camera/color/image_raw", self._on_image, newest, callback_group=sensors)
        if self.policy_name == "scripted":
            self.create_subscription(SceneState, "workcell/scene", self._on_scene, newest, callback_group=sensors)
        self.create_subscription(String, "vla_r1/instruction", self._on_instruction, 10, callback_group=requests)
        self.prediction_pub = self.create_publisher(VlaPrediction, "vla_r1/prediction", 10)
        self.annotated_pub = self.create_publisher(Image, "vla_r1/annotated_image", 1)
        self.status_pub = self.create_publisher(String, "vla_r1/status", latched)
        self.action_server = ActionServer(
            self,
            Predict,
            "vla_r1/predict",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=requests,
        )
        self._publish_status("loading")
        threading.Thread(target=self._load_policy, name="policy-loader", daemon=True).start()

    # ---- policy ----------------------------------------------------------------------------------

    def _policy_params(self) -> dict[str, Any]:
        seed = int(self.get_parameter("seed").value)
        if self.policy_name == "vla_r1":
            backend = {"backend": str(self.get_parameter("backend").value)}
            return backend | {name: self.get_parameter(name).value for name in setting_names()}
        if self.policy_name == "scripted":
            noise = str(self.get_parameter("noise").value)
            return {"scene_source": self._newest_scene, "noise": noise, "seed": seed}
        raise ValueError(f"parameter policy must be vla_r1 or scripted, not {self.policy_name!r}")

    def _load_policy(self) -> None:
        try:
            policy = make_policy(self.policy_name, self._policy_params(), self.model_config)
            if policy.name == "scripted":
                self.get_logger().warn(
                    "policy 'scripted': the SIMULATOR-ONLY scripted expert (test/teaching policy, not the VLA-R1 "
                    "model) answers from workcell/scene ground truth"
                )
            self.get_logger().info(f"loading policy {policy.model_id} ...")
            started = time.monotonic()
            policy.load()
        except Exception as exc:  # any load failure is reported on vla_r1/status; the node stays up
            self.get_logger().error(f"policy {self.policy_name} failed to load: {exc}")
            self._publish_status(f"error: {exc}")
            return
        self.policy = policy
        self.get_logger().info(f"policy {policy.model_id} ready ({time.monotonic() - started:.1f} s)")
        self._publish_status("ready")

    def _publish_status(self, state: str) -> None:
        self._state = state
        self.status_pub.publish(String(data=state))

    @property
    def ready(self) -> bool:
        return self._state == "ready"

    # ---- inputs ----------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        with self._arrived:
            self._image = msg
            self._arrived.notify_all()

    def _on_scene(self, msg: SceneState) -> None:
        with self._arrived:
            self._scene_msg = msg
            self._arrived.notify_all()

    def _wait_for_frame(self, not_before_ns: int) -> Image | None:
        """The newest frame, after waiting (up to frame_wait_s) for one captured at or after
        `not_before_ns`; for the scripted policy, also for the ground truth of that frame."""

        def arrived() -> bool:
            if self._image is None or stamp_to_ns(self._image.header.stamp) < not_before_ns:
                return False
            if self.policy_name != "scripted":
                return True
            return self._scene_msg is not None and stamp_to_ns(self._scene_msg.header.stamp) >= stamp_to_ns(
                self._image.header.stamp
            )

        with self._arrived:
            self._arrived.wait_for(arrived, timeout=self.frame_wait_s)
            return self._image

    def _newest_scene(self):
        from vla_r1_ros.nodes.scene_msgs import scene_from_msg

        with self._lock:
            msg = self._scene_msg
        return scene_from_msg(msg) if msg is not None else None

    # ---- requests --------------------------------------------------------------------------------

    def _on_goal(self, goal: Predict.Goal) -> GoalResponse:
        if not self.ready:
            self.get_logger().warn(f"rejecting Predict goal: policy is {self._state!r}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle) -> Predict.Result:
        request = goal_handle.request

        def stream(task: str, text: str) -> None:
            # The policy calls this between generation steps: raising here is how a cancel stops it.
            if goal_handle.is_cancel_requested:
                raise GenerationCancelled
            goal_handle.publish_feedback(Predict.Feedback(task=task, text=text))

        prediction = self.predict(request.instruction, list(request.tasks), stream, stamp_to_ns(request.not_before))
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.succeed()
        return Predict.Result(prediction=prediction)

    def _on_instruction(self, msg: String) -> None:
        self.predict(msg.data, list(TASKS))

    def predict(self, instruction: str, tasks: list[str], on_text=None, not_before_ns: int = 0) -> VlaPrediction:
        """Run the policy on the newest frame (captured at or after `not_before_ns`); publish and return the
        VlaPrediction (never raises)."""
        tasks = tasks or list(TASKS)
        image = self._wait_for_frame(not_before_ns)
        now = self.get_clock().now()
        if image is None:
            stamp, frame_id, size = now.to_msg(), "", (0, 0)
        else:
            stamp, frame_id, size = image.header.stamp, image.header.frame_id, (image.width, image.height)
        common = {
            "stamp": stamp,
            "frame_id": frame_id,
            "instruction": instruction,
            "model_id": self.policy.model_id if self.policy else self.policy_name,
            "image_size": size,
            "tasks": tasks,
        }

        error = self._request_problem(instruction, tasks, image, now.nanoseconds, not_before_ns)
        rgb = None
        if not error:
            try:
                rgb = image_to_numpy(image)
            except ValueError as exc:  # e.g. data shorter than height × step
                error = f"cannot decode the camera frame: {exc}"
        if error:
            msg = prediction_msg(**common, error=error)
        else:
            if image.encoding == "bgr8":
                rgb = np.ascontiguousarray(rgb[:, :, ::-1])
            with self._predict_lock:
                started = time.monotonic()
                try:
                    texts = self.policy.predict(rgb, instruction, tasks, on_text)
                except GenerationCancelled:
                    texts, error = [], "cancelled by the client"
                except Exception as exc:  # a policy failure is an invalid prediction, not a dead node
                    self.get_logger().error(f"policy {self.policy.model_id} failed: {type(exc).__name__}: {exc}")
                    texts, error = [], f"policy failed: {type(exc).__name__}: {exc}"
                latency = time.monotonic() - started
            parsed = [parse_answer(text, task) for text, task in zip(texts, tasks, strict=False)]
            msg = prediction_msg(**common, raw_texts=texts, parsed=parsed, latency_s=latency, error=error)

        if msg.valid:
            self.get_logger().info(f"prediction for {instruction!r} in {msg.inference_latency_s:.2f} s")
        else:
            self.get_logger().warn(f"invalid prediction for {instruction!r}: {msg.error}")
        self.prediction_pub.publish(msg)
        if rgb is not None:
            annotated = annotate_prediction(rgb, prediction_from_msg(msg))
            self.annotated_pub.publish(numpy_to_image(annotated, "rgb8", stamp, frame_id))
        return msg

    def _request_problem(
        self, instruction: str, tasks: list[str], image: Image | None, now_ns: int, not_before_ns: int
    ) -> str:
        """Why a request cannot run ("" when it can)."""
        if not self.ready or self.policy is None:
            return f"policy {self.policy_name} is not ready ({self._state})"
        if not instruction.strip():
            return "empty instruction"
        unknown = [task for task in tasks if task not in TASKS]
        if unknown:
            return f"unknown task(s) {', '.join(unknown)}; expected {' or '.join(TASKS)}"
        if image is None:
            return "no camera frame received on camera/color/image_raw"
        if stamp_to_ns(image.header.stamp) < not_before_ns:
            return f"no camera frame captured after the request arrived within frame_wait_s {self.frame_wait_s:g}"
        if image.encoding not in ("rgb8", "bgr8"):
            return f"camera frame encoding {image.encoding!r} is not rgb8 or bgr8"
        age_s = (now_ns - stamp_to_ns(image.header.stamp)) / 1e9
        if age_s > self.max_frame_age_s:
            limit = f"max_frame_age_s {self.max_frame_age_s:g}"
            return f"newest camera frame is {age_s:.2f} s old ({limit}): is the camera running?"
        return ""


def model_parameter_defaults(model_config: dict[str, Any]) -> dict[str, Any]:
    """Each vla_r1 setting's default from config/model.yaml, as the typed value a ROS parameter takes."""
    transformers = asdict(TransformersSettings.from_config(model_config))
    openai = asdict(OpenAISettings.from_config(model_config))
    return transformers.pop("generation") | transformers | {k: v for k, v in openai.items() if k != "generation"}


def annotate_prediction(rgb: np.ndarray, data: PredictionData) -> np.ndarray:
    """The frame with the box, the numbered waypoints and a caption: the reasoning, or why it is invalid."""
    reasoning = " / ".join(text for text in data.reasoning.values() if text)
    caption = f"{data.instruction}: {reasoning}" if data.valid else f"INVALID ({data.error}) {data.instruction}"
    return annotate(rgb, data.box, data.waypoints, caption)


def main(args: list[str] | None = None) -> None:
    # Threads: a long prediction holds one, frames and status must keep flowing on the others.
    sys.exit(spin_nodes(lambda: [InferenceNode()], args, num_threads=4))


if __name__ == "__main__":
    main()
