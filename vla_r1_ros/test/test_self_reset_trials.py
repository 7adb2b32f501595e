"""Teleop-free trials in the simulator: `vla-r1 trials --reset self --judge vision` (the whole graph, the real
simulator, real DDS), and the self-reset's operator call after three failures in a row (a real rclpy
SelfReset server standing in for the planning node, so the failures are chosen; no mocks of our code).

The camera judge sees only frames: its inputs are the two frame sets, the camera model, the registry
(tray pose and objects) and the gripper's width (test_vision_judge.py checks it imports no simulator); the
simulator's own verdict is logged beside it, and the summary audits one against the other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from vla_r1_interfaces.srv import SelfReset as SelfResetSrv

from vla_r1_ros import topics
from vla_r1_ros.core.object_registry import ObjectRegistry, RegisteredObject
from vla_r1_ros.core.tabletop import ColourStats
from vla_r1_ros.core.tray import TrayPose
from vla_r1_ros.nodes.trial_client import GraphClient
from vla_r1_ros.scene_setup import MAX_FAILED_RESETS, RunPaused, SelfReset


def test_a_self_reset_camera_judged_run_logs_both_verdicts_and_audits_the_camera(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "vla_r1_ros.cli.main", "trials", "--n", "2", "--seed", "4"]
    command += ["--noise", "wrong_object=0.5", "--reset", "self", "--judge", "vision", "--out", str(out)]
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == 2 and summary["reset"] == "self" and summary["judge"] == "vision"
    assert summary["self_reset"]["teleports"] == 1  # the first layout only
    assert summary["self_reset"]["attempts"] >= 1 and summary["self_reset"]["operator_calls"] == 0
    assert summary["resets"][0]["kind"] == "teleport"
    assert all(event["layout"] for event in summary["resets"] if event["success"])  # every layout logged
    judge = summary["vision_judge"]
    assert judge["n"] >= 1 and judge["false_success"] == 0 and judge["agree"] == judge["n"]
    report = (out / "report.html").read_text()
    assert "The camera judge against the simulator" in report and "Resets and operator calls" in report
    assert json.loads((out / "run_config.json").read_text())["object_registry"] == "objects.json"
    registry = ObjectRegistry.load(out / "objects.json")  # registered from the first frame set
    assert len(registry.objects) >= 3
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(index) == 2 and all("simulator_success" in entry for entry in index)
    for entry in index:
        episode = json.loads((out / entry["dir"] / "episode.json").read_text())
        if entry["outcome_source"] == "vision":  # executed: the camera's verdict, the simulator's beside it
            assert entry["simulator_success"] is not None and entry["vision_judge"]["judged"]
            assert entry["success"] == entry["vision_judge"]["success"]
            assert (out / entry["dir"] / episode["files"]["after_color"]).is_file()
            assert (out / entry["dir"] / "after_depth.png").is_file()
        else:  # ended before the arm moved: the pipeline's verdict, nothing for the camera to judge
            assert entry["outcome_source"] == "pipeline" and entry["vision_judge"] is None

    # The same layouts and instructions again, in the simulator (its reset, its judge): --layouts.
    rerun = tmp_path / "rerun"
    command = [sys.executable, "-m", "vla_r1_ros.cli.main", "trials", "--layouts", str(out), "--out", str(rerun)]
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    original = json.loads((out / "trials.json").read_text())
    again = json.loads((rerun / "trials.json").read_text())
    assert [(t["instruction"], t["target"]) for t in again] == [(t["instruction"], t["target"]) for t in original]
    assert set(json.loads((rerun / "summary.json").read_text())["judged_by"]) <= {"simulator", "pipeline"}


def test_layouts_of_a_run_that_logged_none_are_refused_before_anything_starts(tmp_path):
    run = tmp_path / "plain"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"resets": []}))
    (run / "trials.json").write_text(json.dumps([{"index": 0, "seed": 0, "instruction": "x", "target": "y"}]))
    for folder, message in ((tmp_path / "nothing", "not a finished run of trials"), (run, "logs no layouts")):
        command = [sys.executable, "-m", "vla_r1_ros.cli.main", "trials", "--layouts", str(folder)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


class ResetServer:
    """Serves vla_r1/self_reset as the planning node does, failing as told."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0
        self.node = Node("self_reset_server")
        self.node.create_service(SelfResetSrv, topics.SELF_RESET, self._serve)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _serve(self, request, response):
        self.calls += 1
        response.success = self.calls > self.failures
        response.message = "layout verified" if response.success else "cannot plan the reset: no free spot"
        response.layout = json.dumps({"red_cube": [0.4, 0.0, 0.0]} if response.success else {})
        return response

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=5)
        self.node.destroy_node()


@pytest.fixture
def registry_file(tmp_path) -> Path:
    colour = ColourStats(np.array([60.0, 40.0]), np.eye(2))
    cube = RegisteredObject("red_cube", "red", "cube", colour, 0.05, 0.05, 0.05)
    tray = TrayPose(np.array([0.46, 0.32, 0.03]), np.array([0.24, 0.24, 0.06]))
    path = tmp_path / "objects.json"
    ObjectRegistry((cube,), tray, 0.0).save(path)
    return path


@pytest.mark.parametrize("answered", [True, False])
def test_three_failed_resets_call_the_operator_then_the_run_goes_on_or_pauses(ros, registry_file, answered):
    server = ResetServer(failures=MAX_FAILED_RESETS)
    graph = GraphClient()
    calls: list[str] = []

    def call_operator(reason: str) -> bool:
        calls.append(reason)
        return answered

    try:
        setup = SelfReset(graph, registry_file, call_operator)
        rng = np.random.default_rng(0)
        if answered:
            prepared = setup.prepare(0, 7, rng)
            assert prepared.target == "red_cube" and "red" in prepared.instruction
            assert server.calls == MAX_FAILED_RESETS + 1  # after the operator, the reset is tried again
        else:
            with pytest.raises(RunPaused, match="nobody answered"):
                setup.prepare(0, 7, rng)
            assert server.calls == MAX_FAILED_RESETS
        assert len(calls) == 1 and "3 self-resets failed in a row" in calls[0] and "no free spot" in calls[0]
        counts = setup.summary()["self_reset"]
        assert counts["operator_calls"] == 1 and counts["attempts"] == server.calls and counts["teleports"] == 0
    finally:
        graph.close()
        server.close()
