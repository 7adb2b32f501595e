"""One pick-and-place trial as a state machine with injected steps (no ROS).

perceive -> predict -> lift -> plan (+ safety validation) -> execute [-> judge]. The trial owns its evidence: the
frame set `perceive` returns is kept in the record and handed to `predict` (the model answers about
exactly that image) and to `lift` (its aligned depth); nothing is looked up again by timestamp. The
planning node injects steps that talk to ROS (frame sets, the Predict action, the executor); tests
inject plain functions. Every way a trial can end maps to one EpisodeRecord.failure_stage, a member of
`core.outcomes.FailureStage`: parse | lift | safety | collision | ik | grasp | wrong_object | place |
execute | timeout | cancelled | dry_run; an unexpected
exception (a bug of ours) in any step is `internal`, with outcome_source none and its traceback in the
record: it never counts as the policy's failure.

With a `judge` step (the camera judge, `judge: vision`) every trial whose arm moved is judged from the
frame sets before and after it, whatever the executor said: the camera's verdict becomes the outcome
(outcome_source `vision`) and the simulator's, when there is one, is kept beside it to audit the camera.
A camera that cannot judge, or judges below its confidence threshold, leaves the trial not judged and
says it asks the operator (`camera_outcome`); a gripper's certain verdict (it closed on nothing) stands.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_r1_ros.core.episodes.record import SimulatorVerdict
from vla_r1_ros.core.lifting import LiftedPrediction, LiftError
from vla_r1_ros.core.outcomes import ExecutionResult, FailureStage, OutcomeSource, source_without_record
from vla_r1_ros.core.planning import PickPlacePlan, PlanRejected, ValidatedPlan
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.vision_judge import cannot_judge

STAGES = ("perceive", "predict", "lift", "plan", "execute")
JUDGE_STAGE = "judge"


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
    # (record) -> the camera's judgement of the trial; None: the executor's verdict is the outcome
    judge: Callable[[TrialRecord], CameraVerdict] | None = None


@dataclass(frozen=True)
class CameraVerdict:
    """What the judge step returns: the frame set captured after the trial and the camera's verdict on it."""

    after_frames: Any  # the planning node's FrameSet; None when none could be captured
    verdict: Any  # core.vision_judge.VisionVerdict: not `judged` (below its confidence too) asks the operator


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
    camera: CameraVerdict | None = None  # the camera judge's frames and verdict (judge step)
    simulator_verdict: SimulatorVerdict | None = None  # the simulator's verdict, when another judge decided
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
        if self.steps.judge is not None and record.execution is not None:
            self._judge(record, should_stop)
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

    def _judge(self, record: TrialRecord, should_stop: Callable[[], bool]) -> None:
        """The judge stage: after every trial whose arm moved, unless it was stopped or hit a bug of ours."""
        if record.failure_stage in (FailureStage.CANCELLED, FailureStage.INTERNAL) or should_stop():
            return
        self.on_stage(JUDGE_STAGE)
        started = self.clock()
        try:
            record.camera = self.steps.judge(record)
            camera_outcome(record)
        except StageFailure as exc:  # no after frame set (or no registry): the camera cannot judge
            record.camera = CameraVerdict(None, cannot_judge(str(exc)))
            camera_outcome(record)
        except Exception as exc:
            self._fail(record, FailureStage.INTERNAL, f"internal error in {JUDGE_STAGE}: {exc!r}")
            record.outcome_source = OutcomeSource.NONE
            record.traceback = traceback.format_exc()
        record.stage_names.append(JUDGE_STAGE)
        record.stage_seconds.append(self.clock() - started)

    @staticmethod
    def _fail(record: TrialRecord, failure_stage: str, message: str) -> TrialRecord:
        record.success, record.failure_stage, record.message = False, failure_stage, message
        return record


def camera_outcome(record: TrialRecord) -> None:
    """The trial's outcome from its camera verdict (`record.camera`); the simulator's verdict kept beside."""
    camera = record.camera
    verdict = camera.verdict
    if record.outcome_source == OutcomeSource.SIMULATOR:
        record.simulator_verdict = SimulatorVerdict(record.success, record.failure_stage)
    if verdict.judged:
        record.success, record.failure_stage = bool(verdict.success), verdict.failure_stage
        record.outcome_source, record.message = OutcomeSource.VISION, f"camera: {verdict.message}"
    elif record.outcome_source == OutcomeSource.GRIPPER:  # a gripper that closed on nothing is certain
        record.message += f" (the camera could not judge: {verdict.message})"
    else:
        record.success, record.failure_stage, record.outcome_source = False, "", OutcomeSource.NONE
        record.message = f"camera: {verdict.message}; asks the operator"
