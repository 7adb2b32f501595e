"""The inference node over real rclpy: a client sends Predict goals that carry the frame (and the
simulator's ground truth, for the scripted expert); the node answers about exactly that frame."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import String
from vla_r1_interfaces.action import Predict
from vla_r1_interfaces.msg import VlaPrediction

from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.scene import ObjectState, Scene
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import numpy_to_image
from vla_r1_ros.nodes.inference_node import InferenceNode
from vla_r1_ros.nodes.prediction_msgs import prediction_from_msg
from vla_r1_ros.nodes.scene_msgs import scene_to_msg
from vla_r1_ros.testing.ros import spin_until
from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

INSTRUCTION = "put the red cube in the tray"
RED_CUBE_BOX = (300.0, 250.0, 336.0, 290.0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    # Same directory as test_policies.py's fixture: built once per session (content-stamped cache).
    return build_tiny_vla_r1(tmp_path_factory.getbasetemp() / "tiny-vla-r1-bpe", tokenizer="bpe")


def make_scene() -> Scene:
    red = ObjectState("red_cube", "red", "cube", (0.45, 0.05, 0.025), (0, 0, 0, 1), (0.05,) * 3, RED_CUBE_BOX)
    tray = ObjectState(
        "tray", "grey", "tray", (0.46, -0.32, 0.028), (0, 0, 0, 1), (0.24, 0.24, 0.056), (0.0, 150.0, 170.0, 290.0)
    )
    return Scene(seed=0, objects=(red,), tray=tray, ee_position=(0.3, 0.0, 0.5))


def frame(stamp_sec: int = 42, value: int = 90) -> Image:
    """A 640×480 colour frame as the planning node would send it."""
    from builtin_interfaces.msg import Time

    rgb = np.full((480, 640, 3), value, dtype=np.uint8)
    return numpy_to_image(rgb, "rgb8", Time(sec=stamp_sec), "camera_color_optical_frame")


class Client(Node):
    """Action client + listeners on everything the inference node publishes."""

    def __init__(self):
        super().__init__("inference_client")
        self.action = ActionClient(self, Predict, "vla_r1/predict")
        self.status: list[str] = []
        self.predictions: list[VlaPrediction] = []
        self.annotated: list[Image] = []
        self.feedback: list[tuple[str, str]] = []
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, "vla_r1/status", lambda m: self.status.append(m.data), latched)
        self.create_subscription(VlaPrediction, "vla_r1/prediction", self.predictions.append, 10)
        self.create_subscription(Image, "vla_r1/annotated_image", self.annotated.append, 10)

    def send(self, executor, image: Image, scene: Scene | None = None, instruction=INSTRUCTION, timeout_s=60.0):
        """(accepted, result prediction or None)."""
        assert self.action.wait_for_server(timeout_sec=5.0)
        goal = Predict.Goal(instruction=instruction, tasks=[], image=image)
        if scene is not None:
            goal.has_scene, goal.scene = True, scene_to_msg(scene, image.header.stamp, "panda_link0")
        future = self.action.send_goal_async(
            goal, feedback_callback=lambda f: self.feedback.append((f.feedback.task, f.feedback.text))
        )
        assert spin_until(executor, future.done, 10.0)
        handle = future.result()
        if not handle.accepted:
            return False, None
        result = handle.get_result_async()
        assert spin_until(executor, result.done, timeout_s)
        return True, result.result().result.prediction


def start(executor, **parameters):
    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    node, client = InferenceNode(ProcessContext(PackageConfig.load()), parameter_overrides=overrides), Client()
    for n in (node, client):
        executor.add_node(n)
    return node, client


def wait_ready(executor, client, timeout_s=60.0):
    assert spin_until(executor, lambda: client.status and client.status[-1] != "loading", timeout_s)
    assert client.status[-1] == "ready", client.status


def test_scripted_policy_answers_a_goal_with_the_ground_truth(executor):
    _node, client = start(executor, policy="scripted")
    wait_ready(executor, client)
    image = frame(stamp_sec=42)
    accepted, msg = client.send(executor, image, make_scene())
    assert accepted and msg.valid, msg.error
    assert msg.model_id.startswith("scripted:")
    prediction = prediction_from_msg(msg)  # re-parsed from the raw texts, as the planning node does
    assert prediction.valid and prediction.format_reward == 1.0
    assert prediction.box_px == pytest.approx(RED_CUBE_BOX, abs=0.5)  # float pixels, never rounded
    assert prediction.waypoints is not None and len(prediction.waypoints) == 4
    assert msg.header.stamp == image.header.stamp  # the answer is about the goal's own frame
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert {task for task, _ in client.feedback} == {"affordance", "trajectory"}
    assert spin_until(executor, lambda: client.predictions and client.annotated, 5.0)
    assert client.predictions[-1].raw_texts == msg.raw_texts
    assert (client.annotated[-1].width, client.annotated[-1].height) == (640, 480)

    # The scene travels with the goal: another goal with no scene gets no ground truth to answer from.
    accepted, msg = client.send(executor, frame(stamp_sec=43))
    assert accepted and not msg.valid


def test_scripted_policy_path_convention_parameter(executor):
    _node, client = start(executor, policy="scripted", path_convention="sharerobot")
    wait_ready(executor, client)
    accepted, msg = client.send(executor, frame(), make_scene())
    assert accepted and msg.valid, msg.error
    assert "path=sharerobot" in msg.model_id
    assert len(prediction_from_msg(msg).waypoints) == 5  # the gripper's projection, then the object -> tray path


def assert_streamed_as_answered(executor, client, prediction) -> None:
    """The feedback stream, joined per task, is exactly each task's raw answer. Feedback and result are
    separate topics: the last chunks may arrive after the result (a loaded fresh-clone run read the
    stream a chunk short), but they all arrive."""

    def streamed() -> list[str]:
        return ["".join(text for t, text in client.feedback if t == task) for task in prediction.tasks]

    assert spin_until(executor, lambda: streamed() == list(prediction.raw_texts), 5.0), streamed()


def test_tiny_vla_r1_end_to_end(executor, tiny_model):
    _node, client = start(
        executor, policy="vla_r1", model=str(tiny_model), quantization="none", device="cpu", max_new_tokens=6
    )
    wait_ready(executor, client)
    accepted, prediction = client.send(executor, frame())
    assert accepted
    assert prediction.model_id == f"vla_r1:{tiny_model}"
    assert list(prediction.tasks) == ["affordance", "trajectory"] and len(prediction.raw_texts) == 2
    assert not prediction.valid and prediction.error  # random weights: the parser rejects the text
    assert (prediction.image_width, prediction.image_height) == (640, 480)
    assert prediction.inference_latency_s > 0
    assert_streamed_as_answered(executor, client, prediction)
    assert spin_until(executor, lambda: client.predictions and client.annotated, 5.0)


def test_a_goal_without_a_usable_frame_gives_an_invalid_prediction(executor):
    _node, client = start(executor, policy="scripted")
    wait_ready(executor, client)
    accepted, prediction = client.send(executor, Image(), make_scene())
    assert accepted and not prediction.valid and "no camera frame" in prediction.policy_error
    mono = numpy_to_image(np.zeros((480, 640), np.uint8), "mono8", frame().header.stamp)
    accepted, prediction = client.send(executor, mono, make_scene())
    assert accepted and not prediction.valid and "not rgb8 or bgr8" in prediction.error
    truncated = frame()
    truncated.data = truncated.data[:1000]
    accepted, prediction = client.send(executor, truncated, make_scene())
    assert accepted and not prediction.valid and "cannot decode" in prediction.error


def test_missing_model_reports_an_error_and_rejects_goals(executor, tmp_path):
    _node, client = start(executor, policy="vla_r1", model=str(tmp_path / "absent-checkpoint"))
    assert spin_until(executor, lambda: client.status and client.status[-1].startswith("error"), 30.0)
    assert "does not exist" in client.status[-1]
    accepted, _ = client.send(executor, frame())
    assert not accepted


def test_cancel_stops_a_running_generation(executor, tiny_model):
    from action_msgs.msg import GoalStatus

    _node, client = start(
        executor, policy="vla_r1", model=str(tiny_model), quantization="none", device="cpu", max_new_tokens=2000
    )
    wait_ready(executor, client)
    assert client.action.wait_for_server(timeout_sec=5.0)
    future = client.action.send_goal_async(
        Predict.Goal(instruction=INSTRUCTION, image=frame()),
        feedback_callback=lambda f: client.feedback.append(f.feedback.text),
    )
    assert spin_until(executor, future.done, 10.0) and future.result().accepted
    handle = future.result()
    assert spin_until(executor, lambda: len(client.feedback) >= 3, 30.0)
    handle.cancel_goal_async()
    result = handle.get_result_async()
    assert spin_until(executor, result.done, 30.0)
    assert result.result().status == GoalStatus.STATUS_CANCELED
    prediction = result.result().result.prediction
    assert not prediction.valid and prediction.error == "cancelled by the client"


def test_backend_openai_answers_through_a_real_server(executor, tiny_model):
    """`backend:=openai server_url:=…`: the node's policy is the remote client, the model sits behind
    a real HTTP server (tiny model, streaming) on 127.0.0.1."""
    from vla_r1_ros.core.config import load_config
    from vla_r1_ros.policies.settings import TransformersSettings
    from vla_r1_ros.policies.vla_r1 import VlaR1Policy
    from vla_r1_ros.testing.openai_server import OpenAICompatibleServer

    served = VlaR1Policy(TransformersSettings.from_config(load_config("model"), model=str(tiny_model), device="cpu"))
    with OpenAICompatibleServer(served, "GigaAI-Research/vla-r1") as server:
        _node, client = start(
            executor, policy="vla_r1", backend="openai", server_url=server.url, greedy=True, max_new_tokens=6
        )
        wait_ready(executor, client)
        accepted, prediction = client.send(executor, frame())
    assert accepted and not prediction.error.startswith("policy failed"), prediction.error
    assert prediction.model_id == f"vla_r1:openai:GigaAI-Research/vla-r1@{server.url}"
    assert len(prediction.raw_texts) == 2 and len(server.requests) == 2
    assert_streamed_as_answered(executor, client, prediction)
