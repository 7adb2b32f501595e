"""camera:=replay runs trials end to end: a RealSense recording of the simulated workcell, made the way
the package records (`rs.recorder` around the device, read through `RealSenseCamera`;
`testing.realsense.record`), is played by the real perception node with the parameters `graph.py` gives
it; the real planning node takes frame sets played after each goal, lifts, plans and (in the second
trial) executes; the real reward logger writes each episode with the frame's ORIGINAL recorded stamp.

What stands in for what cannot run here: the simulated Panda (SimArmExecutor on the same workcell the
recording shows) for MoveIt, which `executor:=moveit` would use, and the ground-truth model of
test_planning_node (answering from the workcell's scene, as for any real camera's goal) for VLA-R1.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.parameter import Parameter
from test_planning_node import (
    GroundTruthModel,
    config_for_tray_of,
    graph_discovered,
    instruction_for,
    logged,
    run_goal,
    start_logger,
)
from vla_r1_interfaces.action import ExecuteInstruction

from vla_r1_ros import topics
from vla_r1_ros.core import episodes
from vla_r1_ros.graph import GraphArgs, find_process
from vla_r1_ros.testing.realsense import SoftwareRealSense, record

RECORDED_FRAMES = 10


@pytest.fixture(scope="module")
def recording(workcell, tmp_path_factory):
    """A recording of the workcell as reset with seed 1 (the scene the trials then act on), and the
    recorded frames the package's own camera code delivered while recording, by stamp."""
    target, instruction = instruction_for(workcell, seed=1, pick=2)  # the yellow cube
    captures = [workcell.capture()[0] for _ in range(RECORDED_FRAMES)]
    k = captures[0].intrinsics
    # The simulator's depth is already aligned to colour: the device's depth and colour streams share
    # intrinsics and a zero offset, so alignment keeps every pixel where it is.
    camera = SoftwareRealSense(k, k, depth_to_color_m=(0.0, 0.0, 0.0), serial="424242")
    path = tmp_path_factory.mktemp("replay") / "workcell.db3"
    delivered = record(path, camera, [(frame.depth_mm, frame.color) for frame in captures])
    assert len(delivered) >= RECORDED_FRAMES - 1
    return {
        "path": path,
        "frames": {f.stamp_ns: f for f in delivered.values()},
        "instruction": instruction,
        "target": target,
    }


def node_parameters(args: GraphArgs, process: str) -> list[Parameter]:
    (node,) = find_process(args, process).nodes
    return [Parameter(name, value=value) for name, value in node.parameters.items() if name != "executor"]


def played_graph(executor, config, workcell, played: GraphArgs, intrinsics, log_dir: Path) -> dict:
    """The graph of a replayed camera (recording or bag) as its processes run it: perception and planning
    with their launch parameters, each with a context of its own and neither with a simulated world; the
    simulated Panda stands in for MoveIt, a ground-truth stand-in for the model; a reward logger."""
    from vla_r1_ros.executors.sim import SimArmExecutor
    from vla_r1_ros.nodes.context import ProcessContext
    from vla_r1_ros.nodes.perception_node import PerceptionNode
    from vla_r1_ros.nodes.planning_node import PlanningNode

    perception = PerceptionNode(ProcessContext(config), parameter_overrides=node_parameters(played, "perception"))
    planning = PlanningNode(
        ProcessContext(config_for_tray_of(config, workcell.scene())),  # the recorded layout's tray
        arm=SimArmExecutor(workcell),
        parameter_overrides=node_parameters(played, "planning"),
    )
    model = GroundTruthModel(intrinsics, scene_source=workcell.scene)
    start_logger(executor, log_dir)
    client = Node("trial_client")
    action = ActionClient(client, ExecuteInstruction, topics.EXECUTE_INSTRUCTION)
    for node in (perception, planning, model, client):
        executor.add_node(node)
    assert graph_discovered(executor, action, planning)
    return {"executor": executor, "action": action, "received": {"feedback": []}, "log_dir": log_dir}


@pytest.fixture
def graph(executor, config, workcell, recording, tmp_path):
    replay = GraphArgs(
        camera="replay",
        executor="moveit",
        policy="vla_r1",
        recording=str(recording["path"]),
        log_dir=str(tmp_path / "log"),  # the planning node spools into the log folder
    )
    intrinsics = recording["frames"][min(recording["frames"])].intrinsics
    return played_graph(executor, config, workcell, replay, intrinsics, tmp_path / "log")


def test_a_replayed_recording_runs_trials_and_their_episodes_keep_the_recorded_stamps(graph, workcell, recording):
    instruction, recorded = recording["instruction"], recording["frames"]
    goals_sent_ns = time.time_ns()  # after the recording: no recorded stamp is "captured after the goal"
    assert goals_sent_ns > max(recorded)

    dry_run = run_goal(graph, instruction, plan_only=True)
    assert dry_run.failure_stage == "dry_run", dry_run.message
    executed = run_goal(graph, instruction)
    assert workcell.object_in_tray(recording["target"].name)
    # The simulated arm placed it, but the frames are a recording: the simulator's verdict is about a
    # world the trial's camera does not show, so the trial is not judged (as on a real arm).
    assert not executed.success and executed.failure_stage == "", executed.message
    assert executed.message.startswith("not judged: the simulator's verdict (success: ")

    by_trial = {entry["trial_id"]: (entry, document) for entry, document in logged(graph, n=2)}
    for result, stages in (
        (dry_run, ["perceive", "predict", "lift", "plan"]),
        (executed, ["perceive", "predict", "lift", "plan", "execute"]),
    ):
        entry, document = by_trial[result.episode_id]
        assert list(document["timings"]) == stages and document["plan"]["feasible"]
        # The episode's capture time is the frame's recorded stamp; its images carry the playback stamp,
        # taken after the goal.
        assert document["stamp_ns"] in recorded
        assert document["camera"]["stamp_ns"] > goals_sent_ns > document["stamp_ns"]
        # ...and the frame on disk is the recorded frame of that stamp, bit for bit.
        original = recorded[document["stamp_ns"]]
        np.testing.assert_array_equal(episodes.load_color(graph["log_dir"], entry["episode"]), original.color)
