"""Teleop-free trials through the running node graph (rclpy client side of `vla-r1 trials`).

Per trial: reset the workcell to a seeded random layout (`workcell/reset`; on a real robot a person
resets and presses Enter), wait until the camera shows the new layout, pick a target and an instruction
from the templates, send `ExecuteInstruction`, and wait for the reward logger to confirm the episode.
With `per_scene` > 1 (the paper's protocol: 4 scenes × 10 trials) consecutive trials reset to the same
layout: trial i uses layout seed `seed + i // per_scene`, each with its own target draw.

A trial starts only when the graph can run it (`core.run_holds`): while the planning node refuses goals
(no logger, too many records waiting to be logged) or the camera is not streaming, the run pauses and
says why at once; it goes on with the same trial when the cause clears, and stops after `hold_limit_s`
with what it has (`TrialRunner.stopped` says why). Finished trials that cannot be logged yet are named
at once too: the planning node keeps them and the logger writes them once it can.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

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
from vla_r1_ros.core.run_holds import hold_reason, logging_alert
from vla_r1_ros.core.scene import make_instruction
from vla_r1_ros.core.trials import TrialOutcome
from vla_r1_ros.nodes.goals import send_goal_with_retry
from vla_r1_ros.nodes.scene_msgs import scene_from_msg
from vla_r1_ros.nodes.spin import destroy_node

GOAL_ACCEPT_WAIT_S = 5.0  # an ExecuteInstruction goal unanswered this long is sent again ...
GOAL_SENDS = 6  # ... this many times in all (30 s)
LOG_CONFIRM_WAIT_S = 30.0  # per trial: how long the run waits for the logger's confirmation before going on
LATE_LOG_WAIT_S = 60.0  # after the last trial: how long unconfirmed episodes are waited for, in all
LOGGED_AGAIN = "episodes are logged again: every kept trial has reached the log"


class GraphUnavailable(RuntimeError):
    """The node graph did not come up (or went away) in time."""


class RunStopped(RuntimeError):
    """The run stopped before its last trial: the graph could not run one for `hold_limit_s`."""


class TrialHeld(RuntimeError):
    """The trial did not start: the graph cannot run it now (the planning node refused the goal, the
    camera stopped while the layout was being set up)."""


@dataclass
class TrialSettings:
    n: int
    seed: int
    num_objects: int = 0  # 0 = the workcell's default
    trial_timeout_s: float = 120.0
    manual_reset: bool = False
    instructions: tuple[str, ...] = ()  # used with manual_reset (no ground truth to make them from)
    per_scene: int = 1  # consecutive trials on one layout
    hold_limit_s: float = 600.0  # how long a trial waits for the graph to be able to run it; then the run stops

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
        self.planning_status: dict | None = None  # None until the node says anything: nothing known
        self.perception_status: dict | None = None
        latched = QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
        )
        self.create_subscription(String, topics.INFERENCE_STATUS, self._on_status, latched, callback_group=group)
        self.create_subscription(
            String, topics.PLANNING_STATUS, self._on_planning_status, latched, callback_group=group
        )
        self.create_subscription(String, topics.PERCEPTION_STATUS, self._on_perception_status, 10, callback_group=group)
        self.create_subscription(
            SceneState, topics.SCENE, self._on_scene, qos_profile_sensor_data, callback_group=group
        )
        self.create_subscription(String, topics.EPISODE_LOGGED, self._on_logged, 50, callback_group=group)

    def _on_scene(self, msg: SceneState) -> None:
        with self._lock:
            self._scenes = [*self._scenes[-9:], msg]

    def _on_status(self, msg: String) -> None:
        self.inference_status = msg.data

    def _on_planning_status(self, msg: String) -> None:
        self.planning_status = json.loads(msg.data)

    def _on_perception_status(self, msg: String) -> None:
        self.perception_status = json.loads(msg.data)

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
        self.stopped = ""  # why the last run stopped before its last trial ("" when it ran them all)
        self.unlogged: list[str] = []  # the last run's trials the logger never confirmed
        self._alert = ""  # the logging alert last told

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
            held=self.node.hold_reason,
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
        on_event: Callable[[str], None] = lambda text: None,
        confirm_reset: Callable[[str], None] = lambda prompt: None,
    ) -> list[TrialOutcome]:
        """Run the trials; `judge` (manual reset: the operator) turns each outcome into the judged one;
        `on_event` gets what the operator must know at once (a pause and its cause, a logging problem);
        `confirm_reset` (manual reset) returns once the operator has set the scene up for the prompt's
        instruction: the caller asks (the CLI reads stdin, this library never does)."""
        rng = np.random.default_rng(settings.seed)
        outcomes = []
        self.stopped, self._alert = "", ""
        for index in range(settings.n):
            try:
                outcome = self._run_when_possible(index, settings, rng, on_feedback, on_event, confirm_reset)
            except RunStopped as exc:
                self.stopped = str(exc)
                on_event(f"run stopped before trial {index + 1} of {settings.n}: {exc}")
                break
            if judge is not None:
                outcome = judge(outcome)
            outcomes.append(outcome)
            if on_trial:
                on_trial(outcome)

        def unconfirmed() -> list[TrialOutcome]:
            return [o for o in outcomes if o.episode_id and self.node.logged(o.episode_id) is None]

        late = unconfirmed()
        wait_s = LATE_LOG_WAIT_S
        if late and logging_alert(self.node.planning_status):
            # The records live only in the planning node until the logger writes them: the graph must not
            # be stopped while the cause (a full disk, say) may still clear.
            wait_s = max(wait_s, settings.hold_limit_s)
            on_event(f"waiting up to {wait_s:.0f} s for {len(late)} finished trials to reach the log")
        deadline = time.monotonic() + wait_s
        while unconfirmed() and time.monotonic() < deadline:
            self._tell_logging(on_event)
            time.sleep(0.1)
        for outcome in late:
            if not self.fill_from_log(outcome, 0.0):
                outcome.message += f" (episode not confirmed by the reward logger: see {topics.LOG_EPISODE})"
        self.unlogged = [o.episode_id for o in unconfirmed()]
        if self.unlogged:
            cause = logging_alert(self.node.planning_status) or "the reward logger did not confirm them"
            on_event(
                f"{len(self.unlogged)} finished trials are not in the log ({cause}); the planning node holds them "
                f"only until the graph stops: {', '.join(self.unlogged)}"
            )
        if self._alert and not unconfirmed():  # the logger's confirmations can come before the status says so
            on_event(LOGGED_AGAIN)
            self._alert = ""
        return outcomes

    def _run_when_possible(
        self,
        index: int,
        settings: TrialSettings,
        rng: np.random.Generator,
        on_feedback: Callable[[str], None] | None,
        on_event: Callable[[str], None],
        confirm_reset: Callable[[str], None],
    ) -> TrialOutcome:
        """Trial `index`, started once the graph can run it (RunStopped after `hold_limit_s` of waiting)."""
        seed = settings.layout_seed(index)
        # Who can see how a trial ended when its record does not say: the simulator, or (manual reset, a
        # real arm) nobody until the operator's `judge` does.
        judged_by = OutcomeSource.NONE if settings.manual_reset else OutcomeSource.SIMULATOR
        draw = rng.bit_generator.state  # a trial started again draws the same target and words
        deadline = time.monotonic() + settings.hold_limit_s
        asked = False
        while True:
            self.hold_until_ready(deadline, on_event)
            rng.bit_generator.state = draw
            try:
                if settings.manual_reset:
                    instruction, target = settings.instructions[index % len(settings.instructions)], ""
                    if not asked:  # a person reset the scene once; a held trial does not ask again
                        confirm_reset(f"[trial {index + 1}/{settings.n}] reset the scene for: {instruction!r}")
                        asked = True
                else:
                    instruction, target = self.prepare_sim_trial(seed, settings, rng)
                return self.run_one(
                    index, seed, instruction, target, settings.trial_timeout_s, on_feedback, judged_by, on_event
                )
            except TrialHeld as exc:
                on_event(f"trial {index + 1} not started: {exc}")
                if time.monotonic() >= deadline:  # a cause that clears and comes back at every try
                    raise RunStopped(str(exc)) from exc

    def hold_until_ready(self, deadline: float, on_event: Callable[[str], None]) -> None:
        """Return once the graph can run a trial; RunStopped when it still cannot at `deadline`."""
        self._tell_logging(on_event)
        reason = self.node.hold_reason()
        if not reason:
            return
        start = time.monotonic()
        on_event(f"paused: {reason} (waiting up to {max(0.0, deadline - start):.0f} s)")
        while reason:
            if time.monotonic() >= deadline:
                raise RunStopped(reason)
            time.sleep(0.2)
            self._tell_logging(on_event)
            reason = self.node.hold_reason()
        on_event(f"resumed after {time.monotonic() - start:.0f} s")

    def _tell_logging(self, on_event: Callable[[str], None]) -> None:
        """Say at once when finished trials stop reaching the log (and why), and when they reach it again."""
        alert = logging_alert(self.node.planning_status)
        if alert and alert != self._alert:
            on_event(alert)
        elif self._alert and not alert:
            on_event(LOGGED_AGAIN)
        self._alert = alert

    def run_one(
        self,
        index: int,
        seed: int,
        instruction: str,
        target: str,
        timeout_s: float,
        on_feedback: Callable[[str], None] | None = None,
        judged_by: str = OutcomeSource.NONE,
        on_event: Callable[[str], None] = lambda text: None,
    ) -> TrialOutcome:
        """One trial. `judged_by` is who can see how it ended when the record does not say (`simulator`
        in the simulator; `none` on a real arm, where an operator judges). TrialHeld when the planning
        node refused it for a reason that a wait can clear."""
        start = time.monotonic()
        goal = ExecuteInstruction.Goal(instruction=instruction)
        feedback = (lambda fb: on_feedback(fb.feedback.stage)) if on_feedback else None
        handle = send_goal_with_retry(self.node.execute_client, goal, GOAL_ACCEPT_WAIT_S, GOAL_SENDS, feedback)
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
        # (it respawns) or can write again; the run goes on, and `run` waits for the late confirmations at
        # the end. While the planning node reports that records cannot be logged, waiting here is pointless.
        self.fill_from_log(outcome, LOG_CONFIRM_WAIT_S, give_up=lambda: logging_alert(self.node.planning_status))
        self._tell_logging(on_event)
        return outcome

    def fill_from_log(
        self, outcome: TrialOutcome, timeout_s: float, give_up: Callable[[], object] = lambda: False
    ) -> bool:
        """Rewards and stage times from the trial's index line, once the logger confirms it (True)."""
        deadline = time.monotonic() + timeout_s
        while (logged := self.node.logged(outcome.episode_id)) is None and time.monotonic() < deadline:
            if give_up():
                return False
            time.sleep(0.05)
        if logged is None:
            return False
        outcome.rewards = {k: v for k, v in logged.get("rewards", {}).items() if isinstance(v, int | float)}
        outcome.stage_seconds = dict(logged.get("stage_seconds", {}))
        outcome.outcome_source = logged.get("outcome_source") or outcome.outcome_source  # the record says who
        return True
