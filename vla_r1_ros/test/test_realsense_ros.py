"""camera:=realsense_ros with real rclpy: a publisher on the realsense2_camera driver's topic names
(/camera/camera/..., its QoS) feeds the planning node and the reward logger, remapped exactly as
`graph.build_graph` remaps them, with aligned depth as 16UC1 millimetres and as 32FC1 metres.

The "driver" here is a test node publishing rendered frames of the real PyBullet workcell under the
driver's names, encodings (rgb8; 16UC1 as the driver does, 32FC1 as depth_image_proc and other drivers
do) and QoS (images SYSTEM_DEFAULT, camera info DEFAULT: realsense-ros ros2-master
1cbd81be81e807eefb46f098e76381888ffc7001, realsense2_camera/include/constants.h IMAGE_QOS / DEFAULT_QOS).
The planning node is real (sim arm, plans a topic prediction without executing it); the logger is real.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_system_default
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from test_planning_node import ground_truth_prediction
from vla_r1_interfaces.msg import EpisodeRecord, ManipulationPlan, VlaPrediction

from vla_r1_ros.core import episodes
from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import camera_extrinsics
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
BASE_T_CAMERA = camera_extrinsics(CAMERA)
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


@pytest.fixture
def graph(executor, workcell, tmp_path):
    from vla_r1_ros.executors.sim import SimArmExecutor
    from vla_r1_ros.nodes.planning_node import PlanningNode
    from vla_r1_ros.nodes.reward_logger_node import RewardLoggerNode

    planning = PlanningNode(arm=SimArmExecutor(workcell), cli_args=ros_args("planning"))
    logger = RewardLoggerNode(
        cli_args=ros_args("reward_logger"), parameter_overrides=[Parameter("log_dir", value=str(tmp_path / "log"))]
    )
    driver = rclpy.create_node("camera", namespace="camera")  # as rs_launch.py names it
    pubs = {
        "color": driver.create_publisher(Image, "~/color/image_raw", qos_profile_system_default),
        "depth": driver.create_publisher(Image, "~/aligned_depth_to_color/image_raw", qos_profile_system_default),
        "info": driver.create_publisher(CameraInfo, "~/color/camera_info", 10),
        "prediction": driver.create_publisher(VlaPrediction, "/vla_r1/prediction", 10),
        "episode": driver.create_publisher(EpisodeRecord, "/vla_r1/episode", 10),
    }
    assert pubs["depth"].topic_name == "/camera/camera/aligned_depth_to_color/image_raw"
    received: dict[str, list] = {"plans": [], "logged": []}
    driver.create_subscription(ManipulationPlan, "/vla_r1/plan", received["plans"].append, 10)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    driver.create_subscription(
        String, "/vla_r1/episode_logged", lambda m: received["logged"].append(json.loads(m.data)), reliable
    )
    for node in (planning, logger, driver):
        executor.add_node(node)
    # Every driver topic has its consumers: planning (depth, info) and the logger (all three).
    counts = {"color": 1, "depth": 2, "info": 2, "prediction": 1, "episode": 1}
    assert spin_until(executor, lambda: all(pubs[k].get_subscription_count() >= n for k, n in counts.items()), 10.0)
    assert spin_until(executor, lambda: logger.logged_pub.get_subscription_count() > 0, 10.0)
    return executor, pubs, received, logger


def test_both_depth_encodings_on_the_driver_topics_plan_the_same_grasp_and_log_millimetres(graph, workcell):
    executor, pubs, received, logger = graph
    workcell.reset(3)
    target = next(o for o in workcell.scene().objects if o.visible)
    instruction = f"put the {target.colour} {target.shape} in the tray"
    grasps = {}
    for encoding in ("16UC1", "32FC1"):
        frame, scene = workcell.capture()
        stamp, k = ns_to_stamp(frame.stamp_ns), frame.intrinsics
        pubs["color"].publish(numpy_to_image(frame.color, "rgb8", stamp, OPTICAL))
        pubs["depth"].publish(depth_message(frame.depth_mm, encoding, stamp))
        pubs["info"].publish(camera_info_msg(k, stamp, OPTICAL))
        prediction = ground_truth_prediction(frame, scene, instruction)
        count = len(received["plans"])
        pubs["prediction"].publish(prediction)
        assert spin_until(executor, lambda count=count: len(received["plans"]) > count, 15.0), encoding
        plan = received["plans"][-1]
        assert plan.feasible, f"{encoding}: {plan.failed_check}: {plan.reason}"
        grasps[encoding] = point_to_numpy(plan.grasp_surface_point)

        # The logger stores the trial's depth frame as millimetres whichever encoding came in.
        episode = EpisodeRecord(trial_id=f"trial-{encoding}", instruction=instruction, prediction=prediction)
        episode.header.stamp = stamp
        logged = len(received["logged"])
        pubs["episode"].publish(episode)
        assert spin_until(executor, lambda logged=logged: len(received["logged"]) > logged, 15.0), encoding
        name = received["logged"][-1]["episode"]
        np.testing.assert_array_equal(episodes.load_depth(logger.store.root, name), frame.depth_mm)
        np.testing.assert_array_equal(episodes.load_color(logger.store.root, name), frame.color)
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
