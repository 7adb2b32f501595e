"""The inference node over real rclpy: a perception-like node publishes frames (and the simulator's
ground truth), clients ask through the Predict action and the instruction topic."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from vla_r1_interfaces.action import Predict
from vla_r1_interfaces.msg import SceneState, VlaPrediction

from vla_r1_ros.core.geometry import CameraIntrinsics
from vla_r1_ros.core.scene import ObjectState, Scene
from vla_r1_ros.nodes.conversions import camera_info_msg, numpy_to_image
from vla_r1_ros.nodes.inference_node import InferenceNode
from vla_r1_ros.nodes.prediction_msgs import prediction_from_msg
from vla_r1_ros.testing.ros import spin_until
from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

INSTRUCTION = "put the red cube in the tray"
RED_CUBE_BOX = (300.0, 250.0, 336.0, 290.0)
INTRINSICS = CameraIntrinsics(640, 480, 615.0, 615.0, 320.0, 240.0)


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


class FakePerception(Node):
    """Publishes what the perception node publishes: colour frame, camera info, scene ground truth."""

    def __init__(self):
        super().__init__("fake_perception")
        self.image_pub = self.create_publisher(Image, "camera/color/image_raw", 1)
        self.info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info", 1)
        self.scene_pub = self.create_publisher(SceneState, "workcell/scene", 1)

    def publish(self, age_s: float = 0.0, scene: bool = True) -> None:
        stamp = (self.get_clock().now() - rclpy_duration(age_s)).to_msg()
        rgb = np.full((480, 640, 3), 90, dtype=np.uint8)
        self.image_pub.publish(numpy_to_image(rgb, "rgb8", stamp, "camera_color_optical_frame"))
        self.info_pub.publish(camera_info_msg(INTRINSICS, stamp, "camera_color_optical_frame"))
        if scene:
            from vla_r1_ros.nodes.scene_msgs import scene_to_msg

            self.scene_pub.publish(scene_to_msg(make_scene(), stamp, "panda_link0"))


def rclpy_duration(seconds: float):
    from rclpy.duration import Duration

    return Duration(nanoseconds=int(seconds * 1e9))


class Client(Node):
    """Action client + listeners on everything the inference node publishes."""

    def __init__(self):
        super().__init__("inference_client")
        self.action = ActionClient(self, Predict, "vla_r1/predict")
        self.instruction_pub = self.create_publisher(String, "vla_r1/instruction", 10)
        self.status: list[str] = []
        self.predictions: list[VlaPrediction] = []
        self.annotated: list[Image] = []
        self.feedback: list[tuple[str, str]] = []
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, "vla_r1/status", lambda m: self.status.append(m.data), latched)
        self.create_subscription(VlaPrediction, "vla_r1/prediction", self.predictions.append, 10)
        self.create_subscription(Image, "vla_r1/annotated_image", self.annotated.append, 10)

    def send(self, executor, instruction: str = INSTRUCTION, timeout_s: float = 60.0):
        """(accepted, result prediction or None)."""
        assert self.action.wait_for_server(timeout_sec=5.0)
        goal = Predict.Goal(instruction=instruction, tasks=[])
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
    node = InferenceNode(parameter_overrides=overrides)
    perception, client = FakePerception(), Client()
    for n in (node, perception, client):
        executor.add_node(n)
    return node, perception, client


def wait_ready(executor, client, timeout_s=60.0):
    assert spin_until(executor, lambda: client.status and client.status[-1] != "loading", timeout_s)
    assert client.status[-1] == "ready", client.status


def publish_frame(executor, perception, node, **kwargs):
    perception.publish(**kwargs)
    assert spin_until(executor, lambda: node._image is not None, 5.0)


def test_scripted_policy_answers_a_goal_with_the_ground_truth(executor):
    node, perception, client = start(executor, policy="scripted")
    wait_ready(executor, client)
    publish_frame(executor, perception, node)
    assert spin_until(executor, lambda: node._scene_msg is not None, 5.0)
    accepted, prediction = client.send(executor)
    assert accepted and prediction.valid, prediction.error
    assert prediction.model_id.startswith("scripted:")
    assert (prediction.box_px.x_offset, prediction.box_px.y_offset) == (300, 250)
    assert (prediction.box_px.width, prediction.box_px.height) == (36, 40)
    assert prediction.has_waypoints and len(prediction.waypoints_px) == 4
    assert prediction.header.stamp == node._image.header.stamp
    assert prediction.header.frame_id == "camera_color_optical_frame"
    assert {task for task, _ in client.feedback} == {"affordance", "trajectory"}
    assert spin_until(executor, lambda: client.predictions and client.annotated, 5.0)
    data = prediction_from_msg(client.predictions[-1])
    assert data.valid and data.box_px == (300, 250, 336, 290) and data.format_reward == 1.0
    assert (client.annotated[-1].width, client.annotated[-1].height) == (640, 480)

    client.instruction_pub.publish(String(data="put the red block in the tray"))
    assert spin_until(executor, lambda: len(client.predictions) == 2, 10.0)
    assert client.predictions[-1].valid and client.predictions[-1].instruction == "put the red block in the tray"


def test_tiny_vla_r1_end_to_end(executor, tiny_model):
    node, perception, client = start(
        executor, policy="vla_r1", model=str(tiny_model), quantization="none", device="cpu", max_new_tokens=6
    )
    wait_ready(executor, client)
    publish_frame(executor, perception, node, scene=False)
    accepted, prediction = client.send(executor)
    assert accepted
    assert prediction.model_id == f"vla_r1:{tiny_model}"
    assert list(prediction.tasks) == ["affordance", "trajectory"] and len(prediction.raw_texts) == 2
    assert not prediction.valid and prediction.error  # random weights: the parser rejects the text
    assert (prediction.image_width, prediction.image_height) == (640, 480)
    assert prediction.inference_latency_s > 0
    streamed = {task: "".join(text for t, text in client.feedback if t == task) for task in prediction.tasks}
    assert [streamed[task] for task in prediction.tasks] == list(prediction.raw_texts)
    assert spin_until(executor, lambda: client.predictions and client.annotated, 5.0)


def test_stale_or_missing_frame_gives_an_invalid_prediction(executor):
    node, perception, client = start(executor, policy="scripted", max_frame_age_s=1.0)
    wait_ready(executor, client)
    accepted, prediction = client.send(executor)
    assert accepted and not prediction.valid and "no camera frame" in prediction.error
    publish_frame(executor, perception, node, age_s=5.0, scene=False)
    accepted, prediction = client.send(executor)
    assert accepted and not prediction.valid and "s old" in prediction.error
    assert prediction.header.stamp == node._image.header.stamp


def test_missing_model_reports_an_error_and_rejects_goals(executor, tmp_path):
    _node, _perception, client = start(executor, policy="vla_r1", model=str(tmp_path / "absent-checkpoint"))
    assert spin_until(executor, lambda: client.status and client.status[-1].startswith("error"), 30.0)
    assert "does not exist" in client.status[-1]
    accepted, _ = client.send(executor)
    assert not accepted


def test_cancel_stops_a_running_generation(executor, tiny_model):
    from action_msgs.msg import GoalStatus

    node, perception, client = start(
        executor, policy="vla_r1", model=str(tiny_model), quantization="none", device="cpu", max_new_tokens=2000
    )
    wait_ready(executor, client)
    publish_frame(executor, perception, node, scene=False)
    assert client.action.wait_for_server(timeout_sec=5.0)
    future = client.action.send_goal_async(
        Predict.Goal(instruction=INSTRUCTION), feedback_callback=lambda f: client.feedback.append(f.feedback.text)
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
        node, perception, client = start(
            executor,
            policy="vla_r1",
            backend="openai",
            server_url=server.url,
            greedy=True,
            max_new_tokens=6,
            max_frame_age_s=30.0,  # a busy machine must not turn this into a stale-frame test
        )
        wait_ready(executor, client)
        publish_frame(executor, perception, node, scene=False)
        accepted, prediction = client.send(executor)
    assert accepted and not prediction.error.startswith("policy failed"), prediction.error
    assert prediction.model_id == f"vla_r1:openai:GigaAI-Research/vla-r1@{server.url}"
    assert len(prediction.raw_texts) == 2 and len(server.requests) == 2
    streamed = {task: "".join(text for t, text in client.feedback if t == task) for task in prediction.tasks}
    assert [streamed[task] for task in prediction.tasks] == list(prediction.raw_texts)
