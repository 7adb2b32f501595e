"""Camera death recovers: the simulator's camera dies in the middle of a run, the perception node restarts
it with backoff and says so on `perception/status`, frames resume, and the next trial succeeds.

Real rclpy nodes exchanging real messages: the perception node with the real sim source over a PyBullet
workcell, the planning node driving the simulated Panda, the reward logger. The model is the
ground-truth stand-in of test_planning_node. The fault is injected where a dying renderer would
raise: the workcell's `capture` raises `pybullet.error` until it is put back.
"""

from __future__ import annotations

import json

import pybullet
import pytest
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import String
from test_planning_node import GroundTruthModel, graph_discovered, instruction_for, logged, run_goal, start_logger
from vla_r1_interfaces.action import ExecuteInstruction

from vla_r1_ros import topics
from vla_r1_ros.testing.ros import spin_until


@pytest.fixture
def graph(executor, config, workcell, tmp_path):
    from vla_r1_ros.executors.sim import SimArmExecutor
    from vla_r1_ros.nodes.context import ProcessContext
    from vla_r1_ros.nodes.perception_node import PerceptionNode
    from vla_r1_ros.nodes.planning_node import PlanningNode

    # The first render on the thread that loaded PyBullet (see test_perception_node's sim test).
    model = GroundTruthModel(workcell.capture()[0].intrinsics)
    context = ProcessContext(config, workcell)  # one simulated world, as in the sim stack's process
    perception = PerceptionNode(
        context,
        parameter_overrides=[
            Parameter("source", value="sim"),
            Parameter("rate_hz", value=5.0),  # as the graph runs the sim camera
            Parameter("status_period_s", value=0.2),
            Parameter("restart_delay_s", value=0.2),
            Parameter("restart_max_delay_s", value=0.8),
        ],
    )
    planning = PlanningNode(context, arm=SimArmExecutor(workcell))
    start_logger(executor, tmp_path / "log")
    client = Node("trial_client")
    status: list[dict] = []
    client.create_subscription(String, topics.PERCEPTION_STATUS, lambda m: status.append(json.loads(m.data)), 10)
    action = ActionClient(client, ExecuteInstruction, topics.EXECUTE_INSTRUCTION)
    for node in (perception, planning, model, client):
        executor.add_node(node)
    assert graph_discovered(executor, action, planning)
    received = {"feedback": []}  # what run_goal keeps
    yield {"executor": executor, "action": action, "status": status, "received": received, "log_dir": tmp_path / "log"}


def test_camera_death_is_reported_restarted_with_backoff_and_the_next_trial_succeeds(
    graph, workcell, monkeypatch, capfd
):
    executor, status = graph["executor"], graph["status"]
    target, instruction = instruction_for(workcell, seed=5)
    assert spin_until(executor, lambda: status and status[-1]["published"] > 0, 15.0)

    def dead_renderer():
        raise pybullet.error("getCameraImage failed: the renderer is gone")

    monkeypatch.setattr(workcell, "capture", dead_renderer)
    # Reported, not silent: the state, the cause, and restarts that keep failing while it stays dead.
    assert spin_until(executor, lambda: status[-1]["state"] == "restarting" and status[-1]["restarts"] >= 2, 10.0)
    assert "the renderer is gone" in status[-1]["last_error"]
    during = run_goal(graph, instruction)
    assert not during.success and during.failure_stage == "timeout" and "no complete frame set" in during.message

    monkeypatch.undo()  # the renderer works again
    published = status[-1]["published"]
    assert spin_until(
        executor, lambda: status[-1]["state"] == "streaming" and status[-1]["published"] > published, 10.0
    )
    after = run_goal(graph, instruction)
    assert after.success, f"{after.failure_stage}: {after.message}"
    assert workcell.object_in_tray(target.name)
    # Both trials are logged: the one the dead camera failed (no frame to keep) and the one after it.
    entries = {entry["trial_id"]: entry for entry, _ in logged(graph, n=2)}
    assert entries[during.episode_id]["failure_stage"] == "timeout" and not entries[during.episode_id]["has_color"]
    assert entries[after.episode_id]["success"] and entries[after.episode_id]["has_color"]

    log = capfd.readouterr().err  # rclpy logs to stderr
    assert "camera source 'sim' failed: error('getCameraImage failed: the renderer is gone')" in log
    assert "camera source 'sim' started again (restart 1)" in log
