"""urdf/workcell.urdf agrees with config/: the camera joint is the extrinsics (the one source of truth), and
the table and camera mount are the boxes of the collision description (core/collision.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.collision import camera_mount_boxes, table_box
from vla_r1_ros.core.config import load_config, package_share_path
from vla_r1_ros.core.geometry import RigidTransform, camera_extrinsics

URDF = ET.parse(package_share_path("urdf", "workcell.urdf")).getroot()


def _joint(name: str) -> ET.Element:
    joint = URDF.find(f"joint[@name='{name}']")
    assert joint is not None, f"{name} missing from workcell.urdf"
    return joint


def _origin(joint: ET.Element) -> tuple[np.ndarray, Rotation]:
    origin = joint.find("origin")
    xyz = np.array([float(v) for v in origin.get("xyz").split()])
    rpy = [float(v) for v in origin.get("rpy").split()]
    return xyz, Rotation.from_euler("xyz", rpy)


def test_camera_joint_equals_the_configured_extrinsics():
    camera = load_config("camera")
    joint = _joint("camera_optical_joint")
    assert joint.find("parent").get("link") == camera["frames"]["base"]
    assert joint.find("child").get("link") == camera["frames"]["camera_optical"]
    xyz, rotation = _origin(joint)
    extrinsics = camera_extrinsics(camera)
    np.testing.assert_allclose(xyz, extrinsics.translation, atol=1e-6)
    assert (rotation.inv() * extrinsics.rotation).magnitude() < 1e-6


def test_urdf_is_a_tree_rooted_at_the_base_frame():
    links = {link.get("name") for link in URDF.findall("link")}
    children = [joint.find("child").get("link") for joint in URDF.findall("joint")]
    parents = {joint.find("parent").get("link") for joint in URDF.findall("joint")}
    assert len(children) == len(set(children)), "a link with two parents"
    assert (parents | set(children)) <= links
    assert links - set(children) == {load_config("camera")["frames"]["base"]}
    arm = [j.get("name") for j in URDF.findall("joint") if j.get("type") == "revolute"]
    assert arm == [f"panda_joint{i}" for i in range(1, 8)]


def test_table_joint_is_the_simulated_table_top_centre():
    workcell = load_config("workcell")
    robot, table = workcell["robot"], workcell["table"]
    world_T_base = RigidTransform(
        Rotation.from_euler("z", robot["base_yaw_rad"]), np.array(robot["base_position_world"])
    )
    table_top_world = np.array([*table["position_world"][:2], table["top_z_world"]])
    xyz, rotation = _origin(_joint("table_joint"))
    np.testing.assert_allclose(xyz, world_T_base.inverse().apply(table_top_world), atol=1e-6)
    assert rotation.magnitude() == pytest.approx(robot["base_yaw_rad"], abs=1e-9)


def _base_T_link(name: str) -> RigidTransform:
    """Pose of a link in the base frame through its chain of fixed joints."""
    pose = RigidTransform.identity()
    while name != load_config("camera")["frames"]["base"]:
        joint = next(j for j in URDF.findall("joint") if j.find("child").get("link") == name)
        assert joint.get("type") == "fixed", f"{name} hangs off a moving joint"
        xyz, rotation = _origin(joint)
        pose = RigidTransform(rotation, xyz) @ pose
        name = joint.find("parent").get("link")
    return pose


def _collision_box(link_name: str) -> tuple[RigidTransform, np.ndarray]:
    link = URDF.find(f"link[@name='{link_name}']")
    collision = link.find("collision")
    assert collision is not None, f"{link_name} has no collision geometry"
    origin = collision.find("origin")
    xyz = np.zeros(3) if origin is None else np.array([float(v) for v in origin.get("xyz", "0 0 0").split()])
    rpy = [0.0, 0.0, 0.0] if origin is None else [float(v) for v in origin.get("rpy", "0 0 0").split()]
    size = np.array([float(v) for v in collision.find("geometry/box").get("size").split()])
    return _base_T_link(link_name) @ RigidTransform(Rotation.from_euler("xyz", rpy), xyz), size


def test_table_and_camera_mount_boxes_are_the_collision_description():
    workcell, camera = load_config("workcell"), load_config("camera")
    boxes = [table_box(workcell), *camera_mount_boxes(camera, workcell["collision"]["camera_mount"])]
    for box in boxes:
        pose, size = _collision_box(box.name)
        np.testing.assert_allclose(size, box.size, atol=1e-6, err_msg=box.name)
        np.testing.assert_allclose(pose.translation, box.pose.translation, atol=1e-5, err_msg=box.name)
        assert (pose.rotation.inv() * box.pose.rotation).magnitude() < 1e-5, box.name
