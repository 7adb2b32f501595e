"""The workcell node over real rclpy: the reset service and joint_states."""

from __future__ import annotations

import pytest
from rclpy.node import Node
from sensor_msgs.msg import JointState
from vla_r1_interfaces.srv import ResetScene

from vla_r1_ros.core.scene import Scene
from vla_r1_ros.nodes.scene_msgs import scene_from_msg, scene_to_msg
from vla_r1_ros.testing.ros import spin_until


@pytest.fixture(scope="module")
def workcell():
    from vla_r1_ros.core.config import PackageConfig
    from vla_r1_ros.sim.workcell import Workcell

    with Workcell(PackageConfig.load()) as cell:
        yield cell


def test_scene_message_round_trip_is_exact(workcell):
    scene = workcell.reset(4, 5)
    assert isinstance(scene, Scene)
    assert scene_from_msg(scene_to_msg(scene)) == scene


def test_reset_service_and_joint_states(executor, config, workcell):
    from vla_r1_ros.nodes.context import ProcessContext
    from vla_r1_ros.nodes.workcell_node import WorkcellNode

    node = WorkcellNode(ProcessContext(config, workcell))
    client_node = Node("workcell_test_client")
    executor.add_node(node)
    executor.add_node(client_node)
    states: list[JointState] = []
    client_node.create_subscription(JointState, "joint_states", states.append, 10)
    client = client_node.create_client(ResetScene, "workcell/reset")
    assert spin_until(executor, client.service_is_ready, 5.0)
    future = client.call_async(ResetScene.Request(seed=11, num_objects=5))
    assert spin_until(executor, future.done, 10.0)
    response = future.result()
    assert response.success, response.message
    assert len(response.scene.objects) == 5 and response.scene.seed == 11
    assert scene_from_msg(response.scene).objects == workcell.scene().objects
    assert spin_until(executor, lambda: len(states) >= 3, 5.0)
    assert list(states[-1].name)[:7] == [f"panda_joint{i}" for i in range(1, 8)]
    assert len(states[-1].position) == 9
    bad = client.call_async(ResetScene.Request(seed=1, num_objects=9))
    assert spin_until(executor, bad.done, 5.0)
    assert not bad.result().success
