"""A run of teleop-free trials through the node graph (the loop of `vla-r1 trials`).

Per trial: the `SceneSetup` sets the scene up (`scene_setup.SimReset`: reset the workcell to a seeded
layout and draw the target and instruction; `ManualReset`: the operator), the graph runs the trial
(`nodes.trial_client.GraphClient`: one ExecuteInstruction goal), the run waits for the reward logger
to confirm the episode, the judge (if any) turns the outcome into the judged one, and every
`TrialObserver` hears of it (and of the run's end). With `per_scene` > 1 (the paper's protocol: 4 scenes × 10 trials)
consecutive trials share a layout: trial i uses layout seed `seed + i // per_scene`, each with its own
target draw.

A trial starts only when the graph can run it (`core.run_holds`): while the planning node refuses goals
(no logger, too many records waiting to be logged) or the camera is not streaming, the run pauses and
says why at once; it goes on with the same trial when the cause clears, and stops after `hold_limit_s`
with what it has (`TrialRunner.stopped` says why). Finished trials that cannot be logged yet are named
at once too: the planning node keeps them and the logger writes them once it can.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from vla_r1_ros import topics
from vla_r1_ros.core.outcomes import FailureStage, OutcomeSource, source_without_record
from vla_r1_ros.core.run_holds import logging_alert
from vla_r1_ros.core.trials import TrialOutcome, TrialSettings
from vla_r1_ros.nodes.trial_client import GraphClient, TrialHeld
from vla_r1_ros.scene_setup import RunPaused, SceneSetup
from vla_r1_ros.trial_observers import TrialObserver

LOG_CONFIRM_WAIT_S = 30.0  # per trial: how long the run waits for the logger's confirmation before going on
LATE_LOG_WAIT_S = 60.0  # after the last trial: how long unconfirmed episodes are waited for, in all
LOGGED_AGAIN = "episodes are logged again: every kept trial has reached the log"


class RunStopped(RuntimeError):
    """The run stopped before its last trial: the graph could not run one for `hold_limit_s`."""


class TrialRunner:
    def __init__(
        self,
        graph: GraphClient,
        setup: SceneSetup,
        judge: Callable[[TrialOutcome], TrialOutcome] | None = None,
        observers: Sequence[TrialObserver] = (),
    ) -> None:
        """`judge` turns each outcome into the judged one (a manual-reset run: the operator)."""
        self.graph = graph
        self.setup = setup
        self.judge = judge
        self.observers = tuple(observers)
        self.stopped = ""  # why the last run stopped before its last trial ("" when it ran them all)
        self.unlogged: list[str] = []  # the last run's trials the logger never confirmed
        self._alert = ""  # the logging alert last told

    def _event(self, text: str) -> None:
        for observer in self.observers:
            observer.on_event(text)

    def run(self, settings: TrialSettings) -> list[TrialOutcome]:
        rng = np.random.default_rng(settings.seed)
        outcomes = []
        self.stopped, self._alert = "", ""
        for index in range(settings.n):
            try:
                outcome = self._run_when_possible(index, settings, rng)
            except (RunStopped, RunPaused) as exc:
                self.stopped = str(exc)
                self._event(f"run stopped before trial {index + 1} of {settings.n}: {exc}")
                break
            if self.judge is not None:
                outcome = self.judge(outcome)
            outcomes.append(outcome)
            for observer in self.observers:
                observer.on_trial(outcome)
        self._wait_for_the_log(outcomes, settings)
        for observer in self.observers:
            observer.on_run_end(outcomes, self.stopped, self.unlogged)
        return outcomes

    def _run_when_possible(self, index: int, settings: TrialSettings, rng: np.random.Generator) -> TrialOutcome:
        """Trial `index`, started once the graph can run it (RunStopped after `hold_limit_s` of waiting)."""
        seed = settings.layout_seed(index)
        draw = rng.bit_generator.state  # a trial started again draws the same target and words
        deadline = time.monotonic() + settings.hold_limit_s
        while True:
            self.hold_until_ready(deadline)
            rng.bit_generator.state = draw
            try:
                prepared = self.setup.prepare(index, seed, rng)
                return self.run_one(index, seed, prepared.instruction, prepared.target, settings.trial_timeout_s)
            except TrialHeld as exc:
                self._event(f"trial {index + 1} not started: {exc}")
                if time.monotonic() >= deadline:  # a cause that clears and comes back at every try
                    raise RunStopped(str(exc)) from exc

    def hold_until_ready(self, deadline: float) -> None:
        """Return once the graph can run a trial; RunStopped when it still cannot at `deadline`."""
        self._tell_logging()
        reason = self.graph.node.hold_reason()
        if not reason:
            return
        start = time.monotonic()
        self._event(f"paused: {reason} (waiting up to {max(0.0, deadline - start):.0f} s)")
        while reason:
            if time.monotonic() >= deadline:
                raise RunStopped(reason)
            time.sleep(0.2)
            self._tell_logging()
            reason = self.graph.node.hold_reason()
        self._event(f"resumed after {time.monotonic() - start:.0f} s")

    def _tell_logging(self) -> None:
        """Say at once when finished trials stop reaching the log (and why), and when they reach it again."""
        alert = logging_alert(self.graph.node.planning_status)
        if alert and alert != self._alert:
            self._event(alert)
        elif self._alert and not alert:
            self._event(LOGGED_AGAIN)
        self._alert = alert

    def run_one(self, index: int, seed: int, instruction: str, target: str, timeout_s: float) -> TrialOutcome:
        """One trial. TrialHeld when the planning node refused it for a reason that a wait can clear."""
        start = time.monotonic()
        judged_by = self.setup.judged_by  # who can see how it ended when the record does not say

        def on_stage(stage: str) -> None:
            for observer in self.observers:
                observer.on_stage(stage)

        result = self.graph.execute(instruction, timeout_s, on_stage)
        if result is None:
            stage = FailureStage.TIMEOUT
            return TrialOutcome(
                index,
                seed,
                instruction,
                target,
                False,
                stage,
                f"no result within {timeout_s:.0f} s; goal cancelled",
                wall_seconds=timeout_s,
                outcome_source=source_without_record(False, stage, judged_by),
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
            outcome_source=source_without_record(
                bool(result.success),
                result.failure_stage,
                # No episode: rejected before anything ran, or the planning process died (internal).
                judged_by if result.episode_id else OutcomeSource.PIPELINE,
            ),
        )
        # Unconfirmed in time: the planning node keeps the record and delivers it when the logger is back
        # (it respawns) or can write again; the run goes on, and `run` waits for the late confirmations at
        # the end. While the planning node reports that records cannot be logged, waiting here is pointless.
        if outcome.episode_id:
            self.fill_from_log(
                outcome, LOG_CONFIRM_WAIT_S, give_up=lambda: logging_alert(self.graph.node.planning_status)
            )
        self._tell_logging()
        return outcome

    def _wait_for_the_log(self, outcomes: list[TrialOutcome], settings: TrialSettings) -> None:
        """Wait for the logger to confirm the run's finished trials; name those it never confirmed."""

        def unconfirmed() -> list[TrialOutcome]:
            return [o for o in outcomes if o.episode_id and self.graph.node.logged(o.episode_id) is None]

        late = unconfirmed()
        wait_s = LATE_LOG_WAIT_S
        if late and logging_alert(self.graph.node.planning_status):
            # The records live only in the planning node until the logger writes them: the graph must not
            # be stopped while the cause (a full disk, say) may still clear.
            wait_s = max(wait_s, settings.hold_limit_s)
            self._event(f"waiting up to {wait_s:.0f} s for {len(late)} finished trials to reach the log")
        deadline = time.monotonic() + wait_s
        while unconfirmed() and time.monotonic() < deadline:
            self._tell_logging()
            time.sleep(0.1)
        for outcome in late:
            if not self.fill_from_log(outcome, 0.0):
                outcome.message += f" (episode not confirmed by the reward logger: see {topics.LOG_EPISODE})"
        self.unlogged = [o.episode_id for o in unconfirmed()]
        if self.unlogged:
            cause = logging_alert(self.graph.node.planning_status) or "the reward logger did not confirm them"
            self._event(
                f"{len(self.unlogged)} finished trials are not in the log ({cause}); the planning node holds them "
                f"only until the graph stops: {', '.join(self.unlogged)}"
            )
        if self._alert and not unconfirmed():  # the logger's confirmations can come before the status says so
            self._event(LOGGED_AGAIN)
            self._alert = ""

    def fill_from_log(
        self, outcome: TrialOutcome, timeout_s: float, give_up: Callable[[], object] = lambda: False
    ) -> bool:
        """Rewards and stage times from the trial's index line, once the logger confirms it (True)."""
        deadline = time.monotonic() + timeout_s
        while (logged := self.graph.node.logged(outcome.episode_id)) is None and time.monotonic() < deadline:
            if give_up():
                return False
            time.sleep(0.05)
        if logged is None:
            return False
        outcome.rewards = {k: v for k, v in logged.get("rewards", {}).items() if isinstance(v, int | float)}
        outcome.stage_seconds = dict(logged.get("stage_seconds", {}))
        outcome.outcome_source = logged.get("outcome_source") or outcome.outcome_source  # the record says who
        outcome.vision_judge = logged.get("vision_judge")
        outcome.simulator_success = logged.get("simulator_success")
        return True
