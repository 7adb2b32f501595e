"""vla_r1_interfaces messages cross a real process boundary over Fast DDS."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# The publisher runs in its own Python process: it fills every kind of field the message has
# (header, strings, string arrays, fixed and variable float arrays, nested messages) and publishes
# until a subscriber has matched and the test process ends it.
PUBLISHER = textwrap.dedent(
    """
    import time
    import rclpy
    from vla_r1_interfaces.msg import VlaPrediction

    rclpy.init()
    node = rclpy.create_node("prediction_publisher")
    pub = node.create_publisher(VlaPrediction, "vla_r1/prediction", 10)
    msg = VlaPrediction()
    msg.header.frame_id = "camera_color_optical_frame"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 5678
    msg.instruction = "put the red cube in the tray"
    msg.model_id = "scripted:test"
    msg.image_width, msg.image_height = 640, 480
    msg.tasks = ["affordance", "trajectory"]
    msg.raw_texts = ["<think>a</think> so, the answer is <output>{}</output>", "<think>b</think>"]
    msg.reasoning_affordance = "the red cube is left of the tray"
    msg.has_box = True
    msg.box_normalized = [0.5, 0.25, 0.1, 0.2]
    msg.has_waypoints = True
    msg.waypoints_normalized = [0.1, 0.2, 0.3, 0.4]
    msg.policy_error = "none"
    msg.valid = True
    msg.format_reward = 1.0
    msg.inference_latency_s = 0.25
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if pub.get_subscription_count() > 0:
            pub.publish(msg)
        time.sleep(0.05)
    """
)


def test_vla_prediction_round_trips_between_processes(executor):
    import rclpy
    from vla_r1_interfaces.msg import VlaPrediction

    from vla_r1_ros.testing.ros import spin_until

    received: list[VlaPrediction] = []
    node = rclpy.create_node("prediction_listener")
    node.create_subscription(VlaPrediction, "vla_r1/prediction", received.append, 10)
    executor.add_node(node)
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER])
    try:
        assert spin_until(executor, lambda: bool(received), timeout_s=20), "no VlaPrediction from the other process"
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)

    msg = received[0]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 5678)
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert msg.instruction == "put the red cube in the tray"
    assert list(msg.tasks) == ["affordance", "trajectory"]
    assert msg.raw_texts[1] == "<think>b</think>"
    assert list(msg.box_normalized) == pytest.approx([0.5, 0.25, 0.1, 0.2])
    assert list(msg.waypoints_normalized) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert msg.policy_error == "none"
    assert msg.valid and msg.format_reward == 1.0 and msg.inference_latency_s == pytest.approx(0.25)


def test_every_interface_imports():
    from vla_r1_interfaces.action import ExecuteInstruction, Predict
    from vla_r1_interfaces.msg import EpisodeRecord, ManipulationPlan, SceneObject, SceneState, VlaPrediction
    from vla_r1_interfaces.srv import LogEpisode, ResetScene

    record = EpisodeRecord(prediction=VlaPrediction(valid=True), plan=ManipulationPlan(feasible=False))
    assert record.prediction.valid and not record.plan.feasible
    assert SceneState(objects=[SceneObject(name="red_cube")]).objects[0].name == "red_cube"
    assert ExecuteInstruction.Goal(instruction="x", plan_only=True).plan_only
    assert Predict.Result().prediction.valid is False
    assert ResetScene.Request(seed=3).seed == 3
    assert LogEpisode.Request(record=EpisodeRecord(trial_id="t")).record.trial_id == "t"
    assert not LogEpisode.Response().logged
