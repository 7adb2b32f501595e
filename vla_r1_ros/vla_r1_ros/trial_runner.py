"""Teleop-free trials through the running node graph (rclpy client side of `vla-r1 trials`).

Per trial: reset the workcell to a seeded random layout (`workcell/reset`; on a real robot a person
resets and presses Enter), wait until the camera shows the new layout, pick a target and an instruction
from the templates, send `ExecuteInstruction`, and wait for the reward logger to confirm the episode.
With `per_scene` > 1 (the paper's protocol: 4 scenes × 10 trials) consecutive trials reset to the same
layout: trial i uses layout seed `seed + i // per_scene`, each with its own target draw.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from std_msgs.msg import String
from vla_r1_interfaces.action import ExecuteInstruction
from vla_r1_interfaces.msg import SceneState
from vla_r1_interfaces.srv import LogEpisode, ResetScene

from vla_r1_ros import topics
from vla_r1_ros.core.outcomes import OutcomeSource, source_without_record
from vla_r1_ros.core.scene import make_instruction
from vla_r1_ros.core.trials import TrialOutcome
from vla_r1_ros.nodes.scene_msgs import scene_from_msg

GOAL_ACCEPT_WAIT_S = 5.0  # an ExecuteInstruction goal unanswered this long is sent again ...
GOAL_SENDS = 6  # ... this many times in all (30 s)
LOG_CONFIRM_WAIT_S = 30.0  # per trial: how long the run waits for the logger's confirmation before going on
LATE_LOG_WAIT_S = 60.0  # after the last trial: how long unconfirmed episodes are waited for, in all


class GraphUnavailable(RuntimeError):
    """The node graph did not come up (or went away) in time."""


@dataclass
class TrialSettings:
    n: int
    seed: int
    num_objects: int = 0  # 0 = the workcell's default
    trial_timeout_s: float = 120.0
    manual_reset: bool = False
    instructions: tuple[str, ...] = ()  # used with manual_reset (no ground truth to make them from)
    per_scene: int = 1  # consecutive trials on one layout

    def layout_seed(self, index: int) -> int:
        return self.seed + index // self.per_scene


class TrialClient(Node):
    def __init__(self) -> None:
        super().__init__("vla_r1_trials")
        group = ReentrantCallbackGroup()
        self.reset_client = self.create_client(ResetScene, topics.RESET, callback_group=group)
        self.log_client = self.create_client(LogEpisode, topics.LOG_EPISODE, callback_group=group)
        self.execute_client = ActionClient(self, ExecuteInstruction, topics.EXECUTE_INSTRUCTION, callback_group=group)
        self._lock = threading.Lock()
        self._scenes: list[SceneState] = []
        self._logged: dict[str, dict] = {}
        self.inference_status = ""
        latched = QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
        )
        self.create_subscription(String, topics.INFERENCE_STATUS, self._on_status, latched, callback_group=group)
        self.create_subscription(
            SceneState, topics.SCENE, self._on_scene, qos_profile_sensor_data, callback_group=group
        )
        self.create_subscription(String, topics.EPISODE_LOGGED, self._on_logged, 50, callback_group=group)

    def _on_scene(self, msg: SceneState) -> None:
        with self._lock:
            self._scenes = [*self._scenes[-9:], msg]

    def _on_status(self, msg: String) -> None:
        self.inference_status = msg.data

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


def _wait(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise GraphUnavailable(f"timed out after {timeout_s:.0f} s waiting for {what}")


def future_result(future, timeout_s: float, what: str):
    _wait(future.done, timeout_s, what)
    return future.result()


class TrialRunner:
    """Owns a TrialClient spinning in a background executor."""

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
        self.node.destroy_node()

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

    def logger_log_dir(self, timeout_s: float = 10.0) -> str:
        """The reward logger's `log_dir` parameter: where the trials' episodes (and labels) are written."""
        client = AsyncParameterClient(self.node, "reward_logger")
        if not client.wait_for_services(timeout_sec=timeout_s):
            raise GraphUnavailable("no reward_logger node answers parameter requests (pass --log-dir)")
        response = future_result(client.get_parameters(["log_dir"]), timeout_s, "the reward logger's log_dir")
        return response.values[0].string_value

    def prepare_sim_trial(self, seed: int, settings: TrialSettings, rng: np.random.Generator) -> tuple[str, str]:
        response = future_result(
            self.node.reset_client.call_async(ResetScene.Request(seed=seed, num_objects=settings.num_objects)),
            60.0,
            topics.RESET,
        )
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
        )
        scene = scene_from_msg(scenes[-1])
        visible = [o for o in scene.objects if o.visible]
        if not visible:
            raise GraphUnavailable(f"layout {seed} has no visible object")
        target = visible[rng.integers(len(visible))]
        return make_instruction(target, rng), target.name

    def run(
        self,
        settings: TrialSettings,
        on_trial: Callable[[TrialOutcome], None] | None = None,
        on_feedback: Callable[[str], None] | None = None,
        judge: Callable[[TrialOutcome], TrialOutcome] | None = None,
    ) -> list[TrialOutcome]:
        """Run the trials; `judge` (manual reset: the operator) turns each outcome into the judged one."""
        rng = np.random.default_rng(settings.seed)
        outcomes = []
        for index in range(settings.n):
            seed = settings.layout_seed(index)
            if settings.manual_reset:
                instruction = settings.instructions[index % len(settings.instructions)]
                target = ""
                input(f"[trial {index + 1}/{settings.n}] reset the scene for: {instruction!r}, then press Enter ")
            else:
                instruction, target = self.prepare_sim_trial(seed, settings, rng)
            # Who can see how a trial ended when its record does not say: the simulator, or (manual
            # reset, a real arm) nobody until the operator's `judge` does.
            judged_by = OutcomeSource.NONE if settings.manual_reset else OutcomeSource.SIMULATOR
            outcome = self.run_one(index, seed, instruction, target, settings.trial_timeout_s, on_feedback, judged_by)
            if judge is not None:
                outcome = judge(outcome)
            outcomes.append(outcome)
            if on_trial:
                on_trial(outcome)
        deadline = time.monotonic() + LATE_LOG_WAIT_S
        for outcome in (o for o in outcomes if o.episode_id and not o.rewards):
            if not self.fill_from_log(outcome, max(0.0, deadline - time.monotonic())):
                outcome.message += f" (episode not confirmed by the reward logger: see {topics.LOG_EPISODE})"
        return outcomes

    def run_one(
        self,
        index: int,
        seed: int,
        instruction: str,
        target: str,
        timeout_s: float,
        on_feedback: Callable[[str], None] | None = None,
        judged_by: str = OutcomeSource.NONE,
    ) -> TrialOutcome:
        """One trial. `judged_by` is who can see how it ended when the record does not say (`simulator`
        in the simulator; `none` on a real arm, where an operator judges)."""
        start = time.monotonic()
        goal = ExecuteInstruction.Goal(instruction=instruction)
        feedback = (lambda fb: on_feedback(fb.feedback.stage)) if on_feedback else None
        handle = self._send_goal(goal, feedback)
        if not handle.accepted:
            return TrialOutcome(
                index,
                seed,
                instruction,
                target,
                False,
                "execute",
                "goal rejected by the planning node",
                outcome_source=OutcomeSource.PIPELINE,
            )
        result_future = handle.get_result_async()
        try:
            result = future_result(result_future, timeout_s, "the trial result").result
        except GraphUnavailable:
            future_result(handle.cancel_goal_async(), 10.0, "the cancel to be accepted")
            return TrialOutcome(
                index,
                seed,
                instruction,
                target,
                False,
                "timeout",
                f"no result within {timeout_s:.0f} s; goal cancelled",
                wall_seconds=timeout_s,
                outcome_source=source_without_record(False, "timeout", judged_by),
            )
        outcome = TrialOutcome(
            index=index,
            seed=seed,
            instruction=instruction,
            target=target,
            success=bool(result.success),
            failure_stage=result.failure_stage,
            message=result.message,
            episode_id=result.episode_id,
            wall_seconds=time.monotonic() - start,
            outcome_source=source_without_record(bool(result.success), result.failure_stage, judged_by),
        )
        # Unconfirmed in time: the planning node keeps the record and delivers it when the logger is back
        # (it respawns); the run goes on, and `run` waits for the late confirmations at the end.
        self.fill_from_log(outcome, LOG_CONFIRM_WAIT_S)
        return outcome

    def _send_goal(self, goal: ExecuteInstruction.Goal, feedback: Callable | None) -> Any:
        """The goal's handle. A goal request can be lost while DDS discovery is still matching the
        server's reader to this client (the server looks ready, the request goes nowhere), and rclpy can
        lose a goal response: an unanswered goal is sent again every GOAL_ACCEPT_WAIT_S, and the first
        answer wins (the planning node runs one trial at a time, so a late duplicate is rejected)."""
        sent = []
        for _attempt in range(GOAL_SENDS):
            sent.append(self.node.execute_client.send_goal_async(goal, feedback_callback=feedback))
            deadline = time.monotonic() + GOAL_ACCEPT_WAIT_S
            while time.monotonic() < deadline:
                answered = [f for f in sent if f.done()]
                accepted = [f.result() for f in answered if f.result().accepted]
                if accepted or len(answered) == len(sent):
                    return accepted[0] if accepted else answered[0].result()
                time.sleep(0.02)
        raise GraphUnavailable(
            f"the planning node answered none of {GOAL_SENDS} goals in {GOAL_SENDS * GOAL_ACCEPT_WAIT_S:.0f} s"
        )

    def fill_from_log(self, outcome: TrialOutcome, timeout_s: float) -> bool:
        """Rewards and stage times from the trial's index line, once the logger confirms it (True)."""
        deadline = time.monotonic() + timeout_s
        while (logged := self.node.logged(outcome.episode_id)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if logged is None:
            return False
        outcome.rewards = {k: v for k, v in logged.get("rewards", {}).items() if isinstance(v, int | float)}
        outcome.stage_seconds = dict(logged.get("stage_seconds", {}))
        outcome.outcome_source = logged.get("outcome_source") or outcome.outcome_source  # the record says who
        return True
