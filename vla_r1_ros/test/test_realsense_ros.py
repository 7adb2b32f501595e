"""camera:=realsense_ros with real rclpy: a publisher on the realsense2_camera driver's topic names
(/camera/camera/..., its QoS) feeds the planning node, remapped exactly as `graph.build_graph` remaps it,
with aligned depth as 16UC1 millimetres and as 32FC1 metres; the trial's record reaches the real logger.

The "driver" here is a test node publishing rendered frames of the real PyBullet workcell under the
driver's names, encodings (rgb8; 16UC1 as the driver does, 32FC1 as depth_image_proc and other drivers
do) and QoS (images SYSTEM_DEFAULT, camera info DEFAULT: realsense-ros ros2-master
1cbd81be81e807eefb46f098e76381888ffc7001, realsense2_camera/include/constants.h IMAGE_QOS / DEFAULT_QOS).
The planning node is real (sim arm, plan-only trials, no scene in its frame sets as with any real
camera), the logger is real; the model is the ground-truth stand-in of test_planning_node.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_system_default
from sensor_msgs.msg import CameraInfo, Image
from test_planning_node import GroundTruthModel, config_for_tray_of, graph_discovered, logged, start_logger
from vla_r1_interfaces.action import ExecuteInstruction
from vla_r1_interfaces.msg import ManipulationPlan

from vla_r1_ros import topics
from vla_r1_ros.core import episodes
from vla_r1_ros.core.config import load_config
from vla_r1_ros.graph import GraphArgs, find_process
from vla_r1_ros.nodes.conversions import (
    camera_info_msg,
    depth_to_metres,
    depth_to_mm,
    ns_to_stamp,
    numpy_to_image,
    point_to_numpy,
)
from vla_r1_ros.testing.ros import spin_until

CAMERA = load_config("camera")
OPTICAL = CAMERA["frames"]["camera_optical"]
REALSENSE_ROS = GraphArgs(camera="realsense_ros", executor="moveit", policy="vla_r1")


def ros_args(process: str) -> list[str]:
    """The remappings the graph gives `process`, as launch_ros passes them on the command line."""
    (node,) = find_process(REALSENSE_ROS, process).nodes
    return ["--ros-args", *[arg for source, target in node.remappings for arg in ("-r", f"{source}:={target}")]]


def depth_message(depth_mm: np.ndarray, encoding: str, stamp) -> Image:
    if encoding == "16UC1":
        return numpy_to_image(depth_mm, "16UC1", stamp, OPTICAL)
    metres = depth_mm.astype(np.float32) / 1000.0
    metres[depth_mm == 0] = np.nan  # a float driver's "no depth"
    return numpy_to_image(metres, "32FC1", stamp, OPTICAL)


class DriverStandIn:
    """Publishes workcell frames at 10 Hz as realsense2_camera does (node `camera` in namespace `camera`)."""

    def __init__(self, workcell):
        self.workcell = workcell
        self.encoding = "16UC1"
        self.frames: dict[int, object] = {}  # stamp -> what was published, to compare with what got logged
        self.node = rclpy.create_node("camera", namespace="camera")  # as rs_launch.py names it
        self.pubs = {
            "color": self.node.create_publisher(Image, "~/color/image_raw", qos_profile_system_default),
            "depth": self.node.create_publisher(
                Image, "~/aligned_depth_to_color/image_raw", qos_profile_system_default
            ),
            "info": self.node.create_publisher(CameraInfo, "~/color/camera_info", 10),
        }
        assert self.pubs["depth"].topic_name == "/camera/camera/aligned_depth_to_color/image_raw"
        self._lock = threading.Lock()
        self._stopped = False
        # One capture at a time (see test_planning_node.GroundTruthCamera): ticks that come while a
        # render runs are skipped instead of taking every executor thread.
        self.node.create_timer(0.1, self.publish, callback_group=MutuallyExclusiveCallbackGroup())

    def publish(self) -> None:
        with self._lock:
            if self._stopped:
                return
            frame, _scene = self.workcell.capture()
            stamp = ns_to_stamp(frame.stamp_ns)
            self.frames[frame.stamp_ns] = frame
            self.pubs["color"].publish(numpy_to_image(frame.color, "rgb8", stamp, OPTICAL))
            self.pubs["depth"].publish(depth_message(frame.depth_mm, self.encoding, stamp))
            self.pubs["info"].publish(camera_info_msg(frame.intrinsics, stamp, OPTICAL))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


@pytest.fixture
def graph(executor, config, workcell, tmp_path):
    from vla_r1_ros.executors.sim import SimArmExecutor
    from vla_r1_ros.nodes.context import ProcessContext
    from vla_r1_ros.nodes.planning_node import PlanningNode

    (planning_spec,) = find_process(REALSENSE_ROS, "planning").nodes
    overrides = [Parameter("scene", value=planning_spec.parameters["scene"])]
    workcell.reset(3)  # the layout the test's trials run on: its tray is where this cell's config says
    planning = PlanningNode(
        ProcessContext(config_for_tray_of(config, workcell.scene()), workcell),
        arm=SimArmExecutor(workcell),
        cli_args=ros_args("planning"),
        parameter_overrides=overrides,
    )
    driver = DriverStandIn(workcell)
    model = GroundTruthModel(workcell.capture()[0].intrinsics, scene_source=workcell.scene)
    start_logger(executor, tmp_path / "log")
    client = rclpy.create_node("trial_client")
    action = ActionClient(client, ExecuteInstruction, topics.EXECUTE_INSTRUCTION)
    plans: list[ManipulationPlan] = []
    client.create_subscription(ManipulationPlan, "/vla_r1/plan", plans.append, 10)
    for node in (planning, driver.node, model, client):
        executor.add_node(node)
    # The planning node, the one camera consumer, subscribes to every driver topic.
    assert spin_until(executor, lambda: all(p.get_subscription_count() >= 1 for p in driver.pubs.values()), 10.0)
    assert graph_discovered(executor, action, planning)
    yield {"executor": executor, "action": action, "driver": driver, "plans": plans, "log_dir": tmp_path / "log"}
    driver.stop()


def test_both_depth_encodings_on_the_driver_topics_plan_the_same_grasp_and_log_millimetres(graph, workcell):
    executor, driver = graph["executor"], graph["driver"]
    workcell.reset(3)
    target = next(o for o in workcell.scene().objects if o.visible)
    instruction = f"put the {target.colour} {target.shape} in the tray"
    grasps = {}
    for n, encoding in enumerate(("16UC1", "32FC1"), start=1):
        driver.encoding = encoding
        sent = graph["action"].send_goal_async(ExecuteInstruction.Goal(instruction=instruction, plan_only=True))
        assert spin_until(executor, sent.done, 10.0) and sent.result().accepted
        result = sent.result().get_result_async()
        assert spin_until(executor, result.done, 30.0)
        assert result.result().result.failure_stage == "dry_run", result.result().result.message
        plan = graph["plans"][-1]
        assert plan.feasible, f"{encoding}: {plan.failed_check}: {plan.reason}"
        grasps[encoding] = point_to_numpy(plan.grasp_surface_point)

        # The logger stores the trial's depth frame as millimetres whichever encoding came in.
        entry, document = logged(graph, n)[-1]
        assert document["references"]["source"] != "simulator"  # a real camera's record carries no scene
        frame = driver.frames[document["stamp_ns"]]
        np.testing.assert_array_equal(episodes.load_depth(graph["log_dir"], entry["episode"]), frame.depth_mm)
        np.testing.assert_array_equal(episodes.load_color(graph["log_dir"], entry["episode"]), frame.color)
    np.testing.assert_allclose(grasps["16UC1"], grasps["32FC1"], atol=1e-6)
    np.testing.assert_allclose(grasps["32FC1"], target.top_center, atol=0.01)


def test_depth_conversions_accept_millimetres_and_metres_and_refuse_colour():
    from vla_r1_ros.core.lifting import LiftError

    millimetres = np.array([[650, 0], [1234, 65535]], dtype=np.uint16)
    metres = np.array([[0.65, np.nan], [1.234, np.inf]], dtype=np.float32)
    from_mm = depth_to_metres(numpy_to_image(millimetres, "16UC1"))
    from_m = depth_to_metres(numpy_to_image(metres, "32FC1"))
    np.testing.assert_allclose(from_mm[0], [0.65, np.nan])
    np.testing.assert_allclose(from_m[:, 0], [0.65, 1.234], rtol=1e-6)
    assert np.isnan(from_m[0, 1]) and np.isnan(from_m[1, 1])  # NaN and inf: no depth
    assert depth_to_mm(numpy_to_image(metres, "32FC1")).tolist() == [[650, 0], [1234, 0]]
    assert depth_to_mm(numpy_to_image(millimetres, "16UC1")).tolist() == millimetres.tolist()
    zero_metres = depth_to_metres(numpy_to_image(np.zeros((1, 1), np.float32), "32FC1"))
    assert np.isnan(zero_metres[0, 0])
    with pytest.raises(LiftError, match=r"16UC1.*32FC1") as info:
        depth_to_metres(numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))
    assert info.value.kind == "bad_input"
