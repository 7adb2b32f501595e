"""One pick-and-place trial as a state machine with injected steps (no ROS).

perceive -> predict -> lift -> plan (+ safety validation) -> execute. The trial owns its evidence: the
frame set `perceive` returns is kept in the record and handed to `predict` (the model answers about
exactly that image) and to `lift` (its aligned depth); nothing is looked up again by timestamp. The
planning node injects steps that talk to ROS (frame sets, the Predict action, the executor); tests
inject plain functions. Every way a trial can end maps to one EpisodeRecord.failure_stage, a member of
`core.outcomes.FailureStage`: parse | lift | safety | collision | ik | grasp | wrong_object | place |
execute | timeout | cancelled | dry_run; an unexpected
exception (a bug of ours) in any step is `internal`, with outcome_source none and its traceback in the
record: it never counts as the policy's failure.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_r1_ros.core.lifting import LiftedPrediction, LiftError
from vla_r1_ros.core.outcomes import ExecutionResult, FailureStage, OutcomeSource, source_without_record
from vla_r1_ros.core.planning import PickPlacePlan, PlanRejected, ValidatedPlan
from vla_r1_ros.core.prediction import Prediction

STAGES = ("perceive", "predict", "lift", "plan", "execute")


class StageFailure(Exception):
    """A step could not finish for a reason that is not a bug (no camera frame, predict timed out, …)."""

    def __init__(self, failure_stage: str, message: str):
        super().__init__(message)
        self.failure_stage = failure_stage


@dataclass
class TrialSteps:
    perceive: Callable[[], Any]  # -> the trial's frame set; raise StageFailure when none comes in time
    predict: Callable[[str, list[str], Any], Prediction]  # (instruction, tasks, frames); StageFailure on timeout
    lift: Callable[[Prediction, Any], LiftedPrediction]  # (prediction, frames) -> base frame; raise LiftError
    plan: Callable[[LiftedPrediction], PickPlacePlan]  # raise PlanRejected
    validate: Callable[[PickPlacePlan], ValidatedPlan]  # raise PlanRejected
    execute: Callable[[ValidatedPlan, Callable[[], bool]], ExecutionResult]


@dataclass
class TrialRecord:
    trial_id: str
    instruction: str
    tasks: tuple[str, ...] = ()
    success: bool = False
    failure_stage: str = ""
    outcome_source: str = ""  # who judged success (the executor's word: simulator, gripper, ...); "" = nobody
    message: str = ""
    frames: Any = None  # the frame set the trial acted on (the planning node's FrameSet)
    prediction: Prediction | None = None
    lifted: LiftedPrediction | None = None
    lift_error: LiftError | None = None
    plan: PickPlacePlan | None = None
    validated: ValidatedPlan | None = None
    rejection: PlanRejected | None = None
    execution: ExecutionResult | None = None
    traceback: str = ""  # an internal error's (FailureStage.INTERNAL), for the trial's log
    stage_names: list[str] = field(default_factory=list)
    stage_seconds: list[float] = field(default_factory=list)

    @property
    def ee_path(self) -> list[np.ndarray]:
        return [] if self.execution is None else list(self.execution.ee_path)


def new_trial_id() -> str:
    """Sortable and unique: UTC time + random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


# The failure stage of a plan rejected by each check (every other check is a safety limit).
REJECTION_STAGES = {"reachability": FailureStage.IK, "lift": FailureStage.LIFT, "collision": FailureStage.COLLISION}


class TrialFlow:
    def __init__(
        self,
        steps: TrialSteps,
        on_stage: Callable[[str], None] = lambda stage: None,
        on_plan: Callable[[TrialRecord], None] = lambda record: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.steps = steps
        self.on_stage = on_stage
        # Once the plan's fate is known — after the plan stage, or when lifting failed — before anything moves.
        self.on_plan = on_plan
        self.clock = clock

    def run(
        self,
        instruction: str,
        tasks: list[str],
        plan_only: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
        trial_id: str | None = None,
    ) -> TrialRecord:
        record = TrialRecord(trial_id=trial_id or new_trial_id(), instruction=instruction, tasks=tuple(tasks))
        self._run_stages(record, instruction, tasks, plan_only, should_stop)
        if not record.outcome_source:  # not judged by an executor: the pipeline's own verdict, if it has one
            record.outcome_source = source_without_record(record.success, record.failure_stage, OutcomeSource.NONE)
        return record

    def _run_stages(
        self, record: TrialRecord, instruction: str, tasks: list[str], plan_only: bool, should_stop: Callable[[], bool]
    ) -> TrialRecord:
        for stage in STAGES:
            if stage == "execute" and plan_only:
                # A dry run proves the plan was valid, not that a pick and place would have worked.
                return self._fail(record, FailureStage.DRY_RUN, "plan only: validated, not executed")
            if should_stop():
                return self._fail(record, FailureStage.CANCELLED, f"cancelled before {stage}")
            self.on_stage(stage)
            started = self.clock()
            try:
                self._run_stage(stage, record, instruction, tasks, should_stop)
            except StageFailure as exc:
                self._fail(record, exc.failure_stage, str(exc))
            except LiftError as exc:
                record.lift_error = exc
                self._fail(record, FailureStage.LIFT, str(exc))
            except PlanRejected as exc:
                record.rejection = exc
                failure = REJECTION_STAGES.get(exc.check, FailureStage.SAFETY)
                self._fail(record, failure, str(exc))
            except Exception as exc:  # a bug in a step must still end the trial with a record ...
                # ... that says so: not the policy's failure, so nobody's verdict (outcome_source none).
                self._fail(record, FailureStage.INTERNAL, f"internal error in {stage}: {exc!r}")
                record.outcome_source = OutcomeSource.NONE
                record.traceback = traceback.format_exc()
            record.stage_names.append(stage)
            record.stage_seconds.append(self.clock() - started)
            if stage == "plan" or (stage == "lift" and record.failure_stage):
                self.on_plan(record)
            if record.failure_stage:
                return record
        return record

    def _run_stage(
        self, stage: str, record: TrialRecord, instruction: str, tasks: list[str], should_stop: Callable[[], bool]
    ) -> None:
        if stage == "perceive":
            record.frames = self.steps.perceive()
        elif stage == "predict":
            prediction = record.prediction = self.steps.predict(instruction, tasks, record.frames)
            if not prediction.valid:
                raise StageFailure(FailureStage.PARSE, f"the model's answer did not parse: {prediction.error}")
            missing = [n for n, v in (("box", prediction.box_px), ("waypoints", prediction.waypoints_px)) if v is None]
            if missing:
                raise StageFailure(
                    FailureStage.PARSE, f"pick-and-place needs a box and waypoints; the prediction lacks {missing}"
                )
        elif stage == "lift":
            record.lifted = self.steps.lift(record.prediction, record.frames)
        elif stage == "plan":
            record.plan = self.steps.plan(record.lifted)
            record.validated = self.steps.validate(record.plan)
            record.plan = record.validated.plan  # validation may have chosen the half-turned grasp
        else:
            record.execution = self.steps.execute(record.validated, should_stop)
            execution = record.execution
            record.success = bool(execution.success)
            record.outcome_source = execution.outcome_source
            record.message = execution.message
            if not record.success:  # a failure nobody could judge (outcome_source none) has no stage
                unjudged = execution.outcome_source == OutcomeSource.NONE
                record.failure_stage = execution.failure_stage or ("" if unjudged else FailureStage.EXECUTE)

    @staticmethod
    def _fail(record: TrialRecord, failure_stage: str, message: str) -> TrialRecord:
        record.success, record.failure_stage, record.message = False, failure_stage, message
        return record
