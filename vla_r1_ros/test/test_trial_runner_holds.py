"""`vla-r1 trials` pauses while the graph cannot run a trial, says why at once, goes on when the cause
clears and stops with what it has when it does not (trial_runner.TrialRunner on a real rclpy GraphClient).

A stand-in node publishes `planning/status` and `perception/status` on the real topics with the QoS
and JSON the planning and perception nodes use; the runner's TrialClient reads them over DDS. The hold
comes before any goal is sent, so no planning node is needed; `test_faults.py` runs the whole graph.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from vla_r1_ros import topics
from vla_r1_ros.core.trials import TrialSettings
from vla_r1_ros.nodes.trial_client import GraphClient
from vla_r1_ros.scene_setup import ManualReset
from vla_r1_ros.trial_observers import TrialObserver
from vla_r1_ros.trial_runner import TrialRunner

REFUSAL = "10 finished trials wait to be logged, the oldest for 41 s (cannot write episode 000007: disk full)"


class GraphStatus:
    """Publishes the two statuses as the planning node (latched) and the perception node (periodic) do."""

    def __init__(self) -> None:
        self.node = Node("graph_status")
        latched = QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
        )
        self._planning = self.node.create_publisher(String, topics.PLANNING_STATUS, latched)
        self._perception = self.node.create_publisher(String, topics.PERCEPTION_STATUS, 10)
        self.camera = {"source": "sim", "state": "streaming", "restarts": 0, "last_error": None}
        self.node.create_timer(0.2, lambda: self._perception.publish(String(data=json.dumps(self.camera))))
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    def planning(self, refusal: str = "", undelivered: int = 0, log_error: str = "") -> None:
        status = {"refusal": refusal, "undelivered": undelivered, "log_error": log_error}
        self._planning.publish(String(data=json.dumps(status)))

    def close(self) -> None:
        self.executor.shutdown()
        self._spin.join(timeout=5)
        self.node.destroy_node()


def wait_for(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(condition())


class Events(TrialObserver, list):
    """What the operator is told, in order."""

    def on_event(self, text: str) -> None:
        self.append(text)


def never_asked(index: int, instruction: str) -> None:
    pytest.fail(f"asked to reset the scene for trial {index + 1} ({instruction!r}), which cannot run")


@pytest.fixture
def graph(ros):
    status, client = GraphStatus(), GraphClient()
    events = Events()
    runner = TrialRunner(client, ManualReset(("put the red cube in the tray",), never_asked), observers=[events])
    yield status, runner, events
    client.close()
    status.close()


def test_a_run_pauses_while_the_planning_node_refuses_and_goes_on_when_it_takes_goals(graph):
    status, runner, events = graph
    status.planning(refusal=REFUSAL, undelivered=10, log_error="cannot write episode 000007: disk full")
    assert wait_for(lambda: (runner.graph.node.planning_status or {}).get("refusal") == REFUSAL)
    hold = threading.Thread(target=runner.hold_until_ready, args=(time.monotonic() + 60,))
    hold.start()
    assert wait_for(lambda: any(e.startswith("paused:") for e in events))
    assert any("episodes are not being logged: cannot write episode 000007: disk full" in e for e in events)
    assert f"paused: the planning node refuses trials: {REFUSAL} (waiting up to 60 s)" in events
    time.sleep(0.5)
    assert hold.is_alive()  # nothing starts while the refusal stands
    status.planning()  # the disk has room again: the records are logged, goals are taken
    hold.join(timeout=10)
    assert not hold.is_alive()
    assert events[-2:] == ["episodes are logged again: every kept trial has reached the log", events[-1]]
    assert events[-1].startswith("resumed after")


def test_a_run_pauses_while_the_camera_restarts(graph):
    status, runner, events = graph
    status.planning()
    status.camera |= {"state": "restarting", "restarts": 2, "last_error": "RuntimeError: renderer lost"}
    assert wait_for(lambda: (runner.graph.node.perception_status or {}).get("state") == "restarting")
    hold = threading.Thread(target=runner.hold_until_ready, args=(time.monotonic() + 60,))
    hold.start()
    assert wait_for(lambda: events)
    assert events[0].startswith("paused: the camera (sim) is restarting after 2 restarts: RuntimeError: renderer lost")
    status.camera |= {"state": "streaming"}
    hold.join(timeout=10)
    assert not hold.is_alive() and events[-1].startswith("resumed after")


def test_a_cause_that_does_not_clear_stops_the_run_before_its_next_trial_with_the_reason(graph):
    """A manual-reset run (no simulator to reset): the operator is never asked to reset a scene for a
    trial that cannot run."""
    status, runner, events = graph
    status.planning(refusal=f"no reward logger on {topics.LOG_EPISODE}: the trial could not be logged")
    assert wait_for(lambda: (runner.graph.node.planning_status or {}).get("refusal"))
    settings = TrialSettings(n=3, seed=0, hold_limit_s=1.0)
    assert runner.run(settings) == []
    assert (
        runner.stopped
        == f"the planning node refuses trials: no reward logger on {topics.LOG_EPISODE}: the trial could not be logged"
    )
    assert events[-1] == f"run stopped before trial 1 of 3: {runner.stopped}"
