"""urdf/workcell.urdf agrees with config/: the camera joint is the extrinsics (the one source of truth)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

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
