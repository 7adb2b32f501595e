"""The rclpy side of a run of trials: a `TrialClient` node spinning in its own executor, and the calls
a run makes on the graph (`GraphClient`): wait for the graph, reset the simulated workcell and wait for
frames of the new layout, send one `ExecuteInstruction` goal (sent again while unanswered), read the
statuses and the logger's confirmations. No trial logic: `trial_runner.TrialRunner` owns the loop.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from vla_r1_interfaces.action import ExecuteInstruction
from vla_r1_interfaces.msg import SceneState
from vla_r1_interfaces.srv import LogEpisode, ResetScene, SelfReset

from vla_r1_ros import topics
from vla_r1_ros.core.frame_sync import FrameSetSync
from vla_r1_ros.core.outcomes import FailureStage
from vla_r1_ros.core.run_holds import hold_reason
from vla_r1_ros.core.scene import Scene
from vla_r1_ros.nodes.conversions import stamp_to_ns
from vla_r1_ros.nodes.episode_msgs import FRAMES_QOS, FrameSet
from vla_r1_ros.nodes.goals import send_goal_with_retry, wait_future
from vla_r1_ros.nodes.reward_logger_node import LOGGED_QOS
from vla_r1_ros.nodes.scene_msgs import scene_from_msg
from vla_r1_ros.nodes.spin import destroy_node

GOAL_ACCEPT_WAIT_S = 5.0  # an ExecuteInstruction goal unanswered this long is sent again ...
GOAL_SENDS = 6  # ... this many times in all (30 s)
# A server gone this long is a process that died (kill -9, a crash): the graph respawns it within seconds.
SERVER_GONE_S = 2.0
RESPAWN_WAIT_S = 120.0  # how long a call waits for the respawned server (a process restarts in ~10 s)
RESET_ANSWER_S = 20.0  # a workcell reset unanswered this long is sent again (to a respawned simulator)
SELF_RESET_WAIT_S = 300.0  # a self-reset moves every object in the tray: minutes on a slow real arm
FRAME_SET_WAIT_S = 10.0


class GraphUnavailable(RuntimeError):
    """The node graph did not come up (or went away) in time."""


class TrialHeld(RuntimeError):
    """The trial did not start: the graph cannot run it now (the planning node refused the goal, the
    camera stopped while the layout was being set up)."""


class TrialClient(Node):
    def __init__(self) -> None:
        super().__init__("vla_r1_trials")
        group = ReentrantCallbackGroup()
        self.reset_client = self.create_client(ResetScene, topics.RESET, callback_group=group)
        self.self_reset_client = self.create_client(SelfReset, topics.SELF_RESET, callback_group=group)
        self.log_client = self.create_client(LogEpisode, topics.LOG_EPISODE, callback_group=group)
        self.execute_client = ActionClient(self, ExecuteInstruction, topics.EXECUTE_INSTRUCTION, callback_group=group)
        self._lock = threading.Lock()
        self._scenes: list[SceneState] = []
        self._logged: dict[str, dict] = {}
        self.inference_status = ""
        self.planning_status: dict | None = None  # None until the node says anything: nothing known
        self.perception_status: dict | None = None
        self.recorder_status: dict | None = None  # a --record run's recorder (None: none said anything)
        latched = QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
        )
        self.create_subscription(String, topics.INFERENCE_STATUS, self._on_status, latched, callback_group=group)
        self.create_subscription(
            String, topics.PLANNING_STATUS, self._on_planning_status, latched, callback_group=group
        )
        self.create_subscription(String, topics.PERCEPTION_STATUS, self._on_perception_status, 10, callback_group=group)
        self.create_subscription(
            String, topics.RECORDER_STATUS, self._on_recorder_status, latched, callback_group=group
        )
        self.create_subscription(
            SceneState, topics.SCENE, self._on_scene, qos_profile_sensor_data, callback_group=group
        )
        self.create_subscription(String, topics.EPISODE_LOGGED, self._on_logged, LOGGED_QOS, callback_group=group)

    def _on_scene(self, msg: SceneState) -> None:
        with self._lock:
            self._scenes = [*self._scenes[-9:], msg]

    def _on_status(self, msg: String) -> None:
        self.inference_status = msg.data

    def _on_planning_status(self, msg: String) -> None:
        self.planning_status = json.loads(msg.data)

    def _on_perception_status(self, msg: String) -> None:
        self.perception_status = json.loads(msg.data)

    def _on_recorder_status(self, msg: String) -> None:
        self.recorder_status = json.loads(msg.data)

    def hold_reason(self) -> str:
        return hold_reason(self.planning_status, self.perception_status)

    def _on_logged(self, msg: String) -> None:
        record = json.loads(msg.data)
        with self._lock:
            self._logged[record["trial_id"]] = record

    def forget_scenes(self) -> None:
        with self._lock:
            self._scenes = []

    def scenes_with_seed(self, seed: int) -> list[SceneState]:
        with self._lock:
            return [s for s in self._scenes if s.seed == seed]

    def logged(self, trial_id: str) -> dict | None:
        with self._lock:
            return self._logged.get(trial_id)


RECORDER_MATCH_SETTLE_S = 1.0


def _wait(predicate: Callable[[], object], timeout_s: float, what: str, held: Callable[[], str] = lambda: "") -> object:
    """The predicate's first true value; TrialHeld as soon as `held` gives a reason."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if reason := held():
            raise TrialHeld(f"while waiting for {what}: {reason}")
        time.sleep(0.02)
    raise GraphUnavailable(f"timed out after {timeout_s:.0f} s waiting for {what}")


def future_result(future, timeout_s: float, what: str):
    """The future's result; GraphUnavailable when it is not done in `timeout_s`."""
    if not wait_future(future, timeout_s):
        raise GraphUnavailable(f"timed out after {timeout_s:.0f} s waiting for {what}")
    return future.result()


class ServerGone(RuntimeError):
    """The server of a pending call left the graph: its process died (it is respawned)."""


def result_while_served(future, timeout_s: float, what: str, served: Callable[[], bool]):
    """`future_result`, but ServerGone as soon as `served()` has been false for SERVER_GONE_S: a reply
    from a process that died never comes, and waiting out `timeout_s` for it would stall the run."""
    deadline = time.monotonic() + timeout_s
    gone_since = None
    while not wait_future(future, 0.2):
        now = time.monotonic()
        if now >= deadline:
            raise GraphUnavailable(f"timed out after {timeout_s:.0f} s waiting for {what}")
        gone_since = None if served() else (gone_since or now)
        if gone_since is not None and now - gone_since >= SERVER_GONE_S:
            raise ServerGone(f"the server left the graph while {what} was pending")
    return future.result()


class GraphClient:
    """A TrialClient spinning in a background executor, and the graph calls of a run of trials."""

    def __init__(self) -> None:
        self.node = TrialClient()
        self.executor = MultiThreadedExecutor(num_threads=4)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, name="trials-executor", daemon=True)
        self._spin.start()

    def close(self) -> None:
        self.executor.shutdown()
        # The spin thread must have left rcl before the node goes and the interpreter exits: a daemon
        # thread still waiting in rcl at exit aborts the process ("terminate called without an active
        # exception", seen on a closed stdin in a loaded CI run).
        self._spin.join(timeout=10.0)
        destroy_node(self.node)

    def wait_for_graph(self, timeout_s: float, need_reset: bool = True) -> None:
        if not self.node.execute_client.wait_for_server(timeout_sec=timeout_s):
            raise GraphUnavailable("no ExecuteInstruction server on vla_r1/execute_instruction (planning node)")
        if need_reset and not self.node.reset_client.wait_for_service(timeout_sec=timeout_s):
            raise GraphUnavailable("no workcell/reset service (is the simulator running?)")
        # The planning node starts no trial whose record could not be logged: wait for the logger here.
        if not self.node.log_client.wait_for_service(timeout_sec=timeout_s):
            raise GraphUnavailable(f"no reward logger on {topics.LOG_EPISODE} (is the reward logger running?)")
        _wait(
            lambda: self.node.inference_status == "ready" or self.node.inference_status.startswith("error"),
            timeout_s,
            "the inference node to report ready on vla_r1/status",
        )
        if self.node.inference_status != "ready":
            raise GraphUnavailable(f"inference node: {self.node.inference_status}")

    def wait_for_recorder(self, timeout_s: float) -> None:
        """Until the run's recorder has subscribed to every topic it records and DDS matched each to its
        publishers: what the first trial publishes before that is in no bag (measured: the first trial's
        prediction and plan missing in 2 runs of 4 that did not wait)."""

        def ready() -> bool:
            status = self.node.recorder_status or {}
            if status.get("error"):
                raise GraphUnavailable(f"the recorder stopped: {status['error']}")
            return bool(status.get("ready"))

        try:
            _wait(ready, timeout_s, "the recorder to subscribe to every recorded topic")
        except GraphUnavailable as exc:
            status = self.node.recorder_status or {}
            missing = [*status.get("waiting_for", []), *status.get("unmatched", [])]
            raise GraphUnavailable(f"{exc}: {', '.join(missing) or 'no recorder/status'}") from None
        # The recorder's subscriptions see their publishers; a publisher sends to a subscription only once
        # it has matched it too, which DDS discovery does in the same exchange, a moment apart.
        time.sleep(RECORDER_MATCH_SETTLE_S)

    def logger_log_dir(self, timeout_s: float = 10.0) -> str:
        """The reward logger's `log_dir` parameter: where the trials' episodes (and labels) are written."""
        client = AsyncParameterClient(self.node, "reward_logger")
        if not client.wait_for_services(timeout_sec=timeout_s):
            raise GraphUnavailable("no reward_logger node answers parameter requests (pass --log-dir)")
        response = future_result(client.get_parameters(["log_dir"]), timeout_s, "the reward logger's log_dir")
        return response.values[0].string_value

    def _action_server_gids(self) -> set[bytes]:
        """The ExecuteInstruction servers now on the graph, by their status publishers' GIDs: a respawned
        planning process serves under a new one, so the goal's own server leaving is seen even while the
        new one is up."""
        topic = self.node.resolve_topic_name(topics.EXECUTE_INSTRUCTION) + "/_action/status"
        return {bytes(info.endpoint_gid) for info in self.node.get_publishers_info_by_topic(topic)}

    def reset_layout(self, seed: int, num_objects: int, poses: dict[str, Any] | None = None) -> Scene:
        """Reset the simulated workcell to layout `seed` (its objects at `poses`, name -> [x, y, yaw], when
        given) and return the scene the camera then shows. A simulator process that died is waited for
        (the graph respawns it) and asked again."""
        client = self.node.reset_client
        request = ResetScene.Request(seed=seed, num_objects=num_objects, layout=json.dumps(poses) if poses else "")
        deadline = time.monotonic() + RESPAWN_WAIT_S
        while True:
            # A request to a simulator that died is never answered, and DDS may show its service (and the
            # respawned one's) as ready meanwhile: a reset is idempotent, so it is sent again.
            if not client.wait_for_service(timeout_sec=max(0.0, deadline - time.monotonic())):
                raise GraphUnavailable(
                    f"no {topics.RESET} service in {RESPAWN_WAIT_S:.0f} s (is the simulator running?)"
                )
            future = client.call_async(request)
            if wait_future(future, RESET_ANSWER_S):
                response = future.result()
                break
            future.cancel()
            if time.monotonic() >= deadline:
                raise GraphUnavailable(f"{topics.RESET} answered no request in {RESPAWN_WAIT_S:.0f} s")
        if not response.success:
            raise GraphUnavailable(f"workcell reset failed: {response.message}")
        # Frames from before the reset may carry the same seed (several trials per layout): only frames
        # that arrive after it count.
        self.node.forget_scenes()
        # Two frames of the new layout: by the second, every subscriber has the first one too.
        scenes = _wait(
            lambda: len(self.node.scenes_with_seed(seed)) >= 2 and self.node.scenes_with_seed(seed),
            30.0,
            f"camera frames of the layout with seed {seed}",
            held=self.node.hold_reason,
        )
        return scene_from_msg(scenes[-1])

    def self_reset(self, seed: int) -> SelfReset.Response:
        """The planning node's self-reset (`vla_r1/self_reset`): the arm puts the scene back, then the camera
        verifies it. GraphUnavailable when nobody serves it or it does not answer in SELF_RESET_WAIT_S."""
        client = self.node.self_reset_client
        if not client.wait_for_service(timeout_sec=RESPAWN_WAIT_S):
            raise GraphUnavailable(f"no {topics.SELF_RESET} service in {RESPAWN_WAIT_S:.0f} s (planning node)")
        return future_result(
            client.call_async(SelfReset.Request(seed=seed)), SELF_RESET_WAIT_S, f"{topics.SELF_RESET} to answer"
        )

    def frame_set(self) -> FrameSet:
        """One frame set (colour, aligned depth, camera info, the simulator's scene) captured from now on, as
        the planning node matches them (`core.frame_sync`); subscribed only while it is waited for."""
        sync = FrameSetSync(("color", "depth", "camera_info", "scene"))
        since_ns = self.node.get_clock().now().nanoseconds
        streams = (
            ("color", Image, topics.COLOR),
            ("depth", Image, topics.DEPTH),
            ("camera_info", CameraInfo, topics.CAMERA_INFO),
            ("scene", SceneState, topics.SCENE),
        )
        subscriptions = [
            self.node.create_subscription(
                kind, topic, lambda msg, stream=stream: sync.add(stream, stamp_to_ns(msg.header.stamp), msg), FRAMES_QOS
            )
            for stream, kind, topic in streams
        ]
        try:
            found = sync.wait_for_set(since_ns, FRAME_SET_WAIT_S)
        finally:
            for subscription in subscriptions:
                self.node.destroy_subscription(subscription)
        if found is None:
            raise GraphUnavailable(
                f"no complete frame set in {FRAME_SET_WAIT_S:.0f} s ({sync.missing_set_reason(since_ns)})"
            )
        return FrameSet(found["color"], found["depth"], found["camera_info"], found["scene"])

    def execute(
        self, instruction: str, timeout_s: float, on_feedback: Callable[[str], None] | None = None
    ) -> ExecuteInstruction.Result | None:
        """One trial's goal and its result; None when none came within `timeout_s` (the goal is then
        cancelled). A goal the planning node rejects gives a failed result at stage `execute`, or
        TrialHeld when the planning node says why (a refusal that a wait can clear)."""
        goal = ExecuteInstruction.Goal(instruction=instruction)
        feedback = (lambda fb: on_feedback(fb.feedback.stage)) if on_feedback else None
        client = self.node.execute_client
        if not client.wait_for_server(timeout_sec=RESPAWN_WAIT_S):  # a planning process being respawned
            raise GraphUnavailable(f"no ExecuteInstruction server for {RESPAWN_WAIT_S:.0f} s (planning node)")
        handle = send_goal_with_retry(client, goal, GOAL_ACCEPT_WAIT_S, GOAL_SENDS, feedback)
        if handle is None:
            raise GraphUnavailable(
                f"the planning node answered none of {GOAL_SENDS} goals in {GOAL_SENDS * GOAL_ACCEPT_WAIT_S:.0f} s"
            )
        if not handle.accepted:
            # The planning node publishes why it refuses (planning/status) before it answers.
            try:
                refusal = _wait(lambda: (self.node.planning_status or {}).get("refusal"), 2.0, "a refusal")
            except GraphUnavailable:
                refusal = ""
            if refusal:
                raise TrialHeld(f"the planning node refused the goal: {refusal}")
            return ExecuteInstruction.Result(
                success=False, failure_stage=FailureStage.EXECUTE, message="goal rejected by the planning node"
            )
        result_future = handle.get_result_async()
        server = self._action_server_gids()  # the planning process that took the goal
        try:
            return result_while_served(
                result_future, timeout_s, "the trial result", lambda: bool(server & self._action_server_gids())
            ).result
        except ServerGone:
            # A bug or a kill of ours, never the policy's failure; a record it had finished is in its spool.
            return ExecuteInstruction.Result(
                success=False,
                failure_stage=FailureStage.INTERNAL,
                message="the planning process died during the trial (it is respawned; records it had finished "
                "are delivered from its spool)",
            )
        except GraphUnavailable:
            future_result(handle.cancel_goal_async(), 10.0, "the cancel to be accepted")
            return None
