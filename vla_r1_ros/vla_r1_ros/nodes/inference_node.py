"""`inference_node`: answers `vla_r1/predict` goals with a policy (VLA-R1, or the simulator-only scripted
expert) about the frame the goal carries.

Interfaces (docs/ARCHITECTURE.md):
- serves the action `vla_r1/predict` (Predict): the goal carries the instruction, the tasks, the colour
  image and, from the simulator, its ground truth (used by the scripted expert only); feedback streams
  the answer text per task; the result is the VlaPrediction. The node subscribes to no camera topic:
  the requester owns the frame (the planning node took it at the start of its trial), so the answer is
  about exactly the image the trial lifts and logs.
- publishes `vla_r1/prediction` (VlaPrediction, nodes/prediction_msgs.py), `vla_r1/annotated_image` (the
  frame with box, numbered waypoints, reasoning) and `vla_r1/status` (transient local: "loading",
  "ready", "error: ...").
The policy loads once in a background thread so the executor keeps spinning (status, parameters)
while a 3B model loads; goals are rejected until it is ready. Every failure — undecodable frame, policy
error, malformed answer — ends in a VlaPrediction that says why, never a crash.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import asdict
from typing import Any

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import String
from vla_r1_interfaces.action import Predict
from vla_r1_interfaces.msg import VlaPrediction

from vla_r1_ros import topics
from vla_r1_ros.core.annotate import annotate
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.prompts import TASKS
from vla_r1_ros.core.scene import Scene
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import image_to_numpy, numpy_to_image
from vla_r1_ros.nodes.parameters import declare_parameters
from vla_r1_ros.nodes.prediction_msgs import prediction_msg
from vla_r1_ros.nodes.scene_msgs import scene_from_msg
from vla_r1_ros.nodes.spin import spin_nodes
from vla_r1_ros.policies import make_policy
from vla_r1_ros.policies.base import Policy
from vla_r1_ros.policies.settings import OpenAISettings, TransformersSettings, backend_of, setting_names


class GenerationCancelled(Exception):
    """Raised from the streaming callback when the Predict goal was cancelled: it unwinds `generate`."""


class InferenceNode(Node):
    def __init__(self, context: ProcessContext, **kwargs: Any) -> None:
        super().__init__("inference", **kwargs)
        self.config = context.config
        self.model_config = self.config.model  # the vla_r1 policy is built from it
        # `policy`, the scripted policy's `noise` and `path_convention`: config/nodes.yaml. vla_r1: `backend`
        # (transformers | openai) and every setting of both backends, defaults from config/model.yaml
        # (policies/settings.py validates them when the policy is built).
        params = declare_parameters(self, self.config, "inference", extra=extra_parameters(self.config))
        self.policy_name = str(params["policy"])
        self._predict_lock = threading.Lock()  # one prediction at a time: one model, one GPU
        self._request_scene: Scene | None = None  # the running goal's ground truth (scripted expert only)
        self._state = "loading"
        self.policy: Policy | None = None

        requests = ReentrantCallbackGroup()
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.prediction_pub = self.create_publisher(VlaPrediction, topics.PREDICTION, 10)
        self.annotated_pub = self.create_publisher(Image, topics.ANNOTATED_IMAGE, 1)
        self.status_pub = self.create_publisher(String, topics.INFERENCE_STATUS, latched)
        self.action_server = ActionServer(
            self,
            Predict,
            topics.PREDICT,
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
            convention = str(self.get_parameter("path_convention").value)
            scene = {"scene_source": lambda: self._request_scene}
            return scene | {"noise": noise, "seed": seed, "path_convention": convention}
        raise ValueError(f"parameter policy must be vla_r1 or scripted, not {self.policy_name!r}")

    def _load_policy(self) -> None:
        try:
            policy = make_policy(self.policy_name, self.config, self._policy_params())
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

        scene = scene_from_msg(request.scene) if request.has_scene else None
        msg = self.predict(request.instruction, list(request.tasks), request.image, scene, stream)
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.succeed()
        return Predict.Result(prediction=msg)

    def predict(
        self, instruction: str, tasks: list[str], image: Image, scene: Scene | None = None, on_text=None
    ) -> VlaPrediction:
        """Run the policy on `image` (with the simulator's `scene` for the scripted expert); publish and
        return the VlaPrediction (never raises)."""
        tasks = tasks or list(TASKS)
        model_id = self.policy.model_id if self.policy else self.policy_name
        size = (int(image.width), int(image.height))
        error = self._request_problem(instruction, tasks, image)
        rgb = None
        if not error:
            try:
                rgb = image_to_numpy(image)
            except ValueError as exc:  # e.g. data shorter than height × step
                error = f"cannot decode the camera frame: {exc}"
        if error:
            prediction = Prediction.failed(instruction, tasks, error, size, model_id)
        else:
            if image.encoding == "bgr8":
                rgb = np.ascontiguousarray(rgb[:, :, ::-1])
            with self._predict_lock:
                self._request_scene = scene
                started = time.monotonic()
                try:
                    texts = self.policy.predict(rgb, instruction, tasks, on_text)
                    error = ""
                except GenerationCancelled:
                    texts, error = [], "cancelled by the client"
                except Exception as exc:  # a policy failure is an invalid prediction, not a dead node
                    self.get_logger().error(f"policy {model_id} failed: {type(exc).__name__}: {exc}")
                    texts, error = [], f"policy failed: {type(exc).__name__}: {exc}"
                finally:
                    self._request_scene = None
                latency = time.monotonic() - started
            if not error and len(texts) != len(tasks):
                error = f"policy {model_id} answered {len(texts)} of {len(tasks)} tasks"
            if error:
                prediction = Prediction.failed(instruction, tasks, error, size, model_id)
            else:
                prediction = Prediction(instruction, tuple(tasks), tuple(texts), size, model_id, latency)

        if prediction.valid:
            self.get_logger().info(f"prediction for {instruction!r} in {prediction.latency_s:.2f} s")
        else:
            self.get_logger().warn(f"invalid prediction for {instruction!r}: {prediction.error}")
        msg = prediction_msg(prediction, image.header.stamp, image.header.frame_id)
        self.prediction_pub.publish(msg)
        if rgb is not None:
            annotated = annotate_prediction(rgb, prediction)
            self.annotated_pub.publish(numpy_to_image(annotated, "rgb8", image.header.stamp, image.header.frame_id))
        return msg

    def _request_problem(self, instruction: str, tasks: list[str], image: Image) -> str:
        """Why a request cannot run ("" when it can)."""
        if not self.ready or self.policy is None:
            return f"policy {self.policy_name} is not ready ({self._state})"
        if not instruction.strip():
            return "empty instruction"
        unknown = [task for task in tasks if task not in TASKS]
        if unknown:
            return f"unknown task(s) {', '.join(unknown)}; expected {' or '.join(TASKS)}"
        if image.width == 0 or image.height == 0:
            return "the request carries no camera frame"
        if image.encoding not in ("rgb8", "bgr8"):
            return f"camera frame encoding {image.encoding!r} is not rgb8 or bgr8"
        return ""


def extra_parameters(config: PackageConfig) -> dict[str, Any]:
    """The parameters whose defaults config/model.yaml gives (the rest are in config/nodes.yaml): `backend`
    and every vla_r1 setting of both backends."""
    return {"backend": backend_of(config.model)} | model_parameter_defaults(config.model)


def model_parameter_defaults(model_config: dict[str, Any]) -> dict[str, Any]:
    """Each vla_r1 setting's default from config/model.yaml, as the typed value a ROS parameter takes."""
    transformers = asdict(TransformersSettings.from_config(model_config))
    openai = asdict(OpenAISettings.from_config(model_config))
    return transformers.pop("generation") | transformers | {k: v for k, v in openai.items() if k != "generation"}


def annotate_prediction(rgb: np.ndarray, prediction: Prediction) -> np.ndarray:
    """The frame with the box, the numbered waypoints and a caption: the reasoning, or why it is invalid."""
    reasoning = " / ".join(text for text in prediction.reasoning.values() if text)
    instruction = prediction.instruction
    caption = f"{instruction}: {reasoning}" if prediction.valid else f"INVALID ({prediction.error}) {instruction}"
    return annotate(rgb, prediction.box, prediction.waypoints, caption)


def main(args: list[str] | None = None) -> None:
    # Threads: a long prediction holds one, frames and status must keep flowing on the others.
    sys.exit(spin_nodes(lambda context: [InferenceNode(context)], args))


if __name__ == "__main__":
    main()
