"""The trial state machine (no ROS): stage order, and how every way a trial ends maps to a failure_stage."""

from __future__ import annotations

import numpy as np
import pytest

from vla_r1_ros.core.episodes import SimulatorVerdict
from vla_r1_ros.core.lifting import LiftedPrediction, LiftError
from vla_r1_ros.core.outcomes import ExecutionResult, FailureStage, OutcomeSource
from vla_r1_ros.core.planning import PlanRejected
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.prompts import format_answer
from vla_r1_ros.core.trial_flow import CameraVerdict, StageFailure, TrialFlow, TrialSteps
from vla_r1_ros.core.vision_judge import VisionVerdict

TASKS = ("affordance", "trajectory")
BOX_TEXT = format_answer("the cube", {"x": 0.5, "y": 0.5, "width": 0.1, "height": 0.1})
PATH_TEXT = format_answer("to the tray", [[0.5, 0.5], [0.7, 0.4]])
GOOD = Prediction("x", TASKS, (BOX_TEXT, PATH_TEXT), (640, 480))
FRAMES = object()  # the frame set perceive returns: the flow hands this very object on


class FakeValidated:
    plan = "the plan (maybe half-turned)"


def steps(**overrides) -> TrialSteps:
    def fail(exc):
        def raise_it(*args):
            raise exc

        return raise_it

    defaults = {
        "perceive": lambda: FRAMES,
        "predict": lambda instruction, tasks, frames: GOOD if frames is FRAMES else None,
        "lift": lambda prediction, frames: LiftedPrediction(None, None, "panda_link0") if frames is FRAMES else None,
        "plan": lambda lifted: "the plan",
        "validate": lambda plan: FakeValidated(),
        "execute": lambda validated, should_stop: ExecutionResult(True, message="placed", ee_path=[np.zeros(3)]),
    }
    defaults.update({k: fail(v) if isinstance(v, Exception) else v for k, v in overrides.items()})
    return TrialSteps(**defaults)


def test_a_successful_trial_runs_every_stage_in_order():
    seen, plans = [], []
    record = TrialFlow(steps(), on_stage=seen.append, on_plan=plans.append).run("put the red cube in the tray", [])
    assert record.success and record.failure_stage == "" and record.message == "placed"
    assert seen == record.stage_names == ["perceive", "predict", "lift", "plan", "execute"]
    assert len(record.stage_seconds) == 5 and all(s >= 0 for s in record.stage_seconds)
    assert plans == [record] and record.plan == FakeValidated.plan  # the plan that was validated
    assert len(record.ee_path) == 1 and record.trial_id
    assert record.frames is FRAMES and record.prediction is GOOD  # the trial's own evidence, kept with it


@pytest.mark.parametrize(
    ("overrides", "stage"),
    [
        ({"perceive": StageFailure("timeout", "no camera")}, "timeout"),
        ({"predict": StageFailure("timeout", "no answer")}, "timeout"),
        ({"predict": lambda i, t, f: Prediction("x", TASKS, (BOX_TEXT, "no output"), (640, 480))}, "parse"),
        ({"predict": lambda i, t, f: Prediction("x", TASKS[:1], (BOX_TEXT,), (640, 480))}, "parse"),
        ({"predict": lambda i, t, f: Prediction.failed("x", TASKS, "policy crashed")}, "parse"),
        ({"lift": LiftError("depth_hole", "hole")}, "lift"),
        ({"plan": PlanRejected("lift", "no waypoints")}, "lift"),
        ({"validate": PlanRejected("workspace", "outside")}, "safety"),
        ({"validate": PlanRejected("clearance", "too low")}, "safety"),
        ({"validate": PlanRejected("reachability", "no IK")}, "ik"),
        ({"execute": lambda v, s: ExecutionResult(False, "grasp", "closed on nothing")}, "grasp"),
    ],
)
def test_failures_map_to_episode_failure_stages(overrides, stage):
    record = TrialFlow(steps(**overrides)).run("x", [])
    assert not record.success and record.failure_stage == stage and record.message


@pytest.mark.parametrize("stage", ["perceive", "predict", "lift", "plan", "validate", "execute"])
def test_a_bug_in_any_stage_is_internal_never_judged_and_keeps_its_traceback(stage):
    """An exception no step expects is our bug, not the policy's failure: `internal`, outcome_source
    none (so no success rate counts it), the traceback kept for the trial's log."""
    from vla_r1_ros.core.outcomes import is_judged

    record = TrialFlow(steps(**{stage: KeyError(f"bug in {stage}")})).run("x", [])
    assert not record.success and record.failure_stage == "internal" and record.outcome_source == "none"
    assert not is_judged(record.outcome_source, record.failure_stage)
    assert record.message.startswith("internal error in ") and f"bug in {stage}" in record.message
    assert "Traceback (most recent call last)" in record.traceback and "KeyError" in record.traceback


def test_lift_failure_still_reports_the_plan_outcome_and_nothing_executes():
    executed, plans = [], []
    run = steps(lift=LiftError("stale", "old frame"), execute=lambda v, s: executed.append(v))
    flow = TrialFlow(run, on_plan=plans.append)
    record = flow.run("x", [])
    assert record.lift_error.kind == "stale" and plans == [record] and not executed
    assert record.stage_names == ["perceive", "predict", "lift"]


def test_plan_only_and_cancel():
    executed = []
    run = steps(execute=lambda v, s: executed.append(v))
    dry_run = TrialFlow(run).run("x", [], plan_only=True)
    assert not dry_run.success and dry_run.failure_stage == "dry_run" and not executed  # never a success
    assert dry_run.outcome_source == "none"  # nobody judged what was never tried
    polls = iter([False, False, True])
    record = TrialFlow(run).run("x", [], should_stop=lambda: next(polls, True))
    assert record.failure_stage == "cancelled" and record.stage_names == ["perceive", "predict"] and not executed


def camera(success: bool, stage: str = "", judged: bool = True):
    def judge(record):
        assert record.frames is FRAMES and record.execution is not None  # after the arm moved, its own frames
        return CameraVerdict("after", VisionVerdict(judged, success, stage, 0.97, "seen"))

    return judge


def test_the_camera_judges_every_executed_trial_and_the_simulator_is_kept_beside_it():
    simulated = ExecutionResult(True, message="placed", outcome_source=OutcomeSource.SIMULATOR)
    record = TrialFlow(steps(execute=lambda v, s: simulated, judge=camera(False, "place"))).run("x", list(TASKS))
    assert (record.success, record.failure_stage, record.outcome_source) == (False, "place", "vision")
    assert record.simulator_verdict == SimulatorVerdict(True, "") and record.camera.after_frames == "after"
    assert record.stage_names[-1] == "judge" and record.message == "camera: seen"
    # A failed motion is judged too: the scene may have changed all the same.
    failed = ExecutionResult(False, FailureStage.EXECUTE, "controller abort", outcome_source=OutcomeSource.NONE)
    record = TrialFlow(steps(execute=lambda v, s: failed, judge=camera(False, "grasp"))).run("x", list(TASKS))
    assert (record.failure_stage, record.outcome_source, record.simulator_verdict) == ("grasp", "vision", None)


def test_what_the_camera_cannot_judge_goes_to_the_operator_and_a_gripper_verdict_stands():
    record = TrialFlow(steps(judge=camera(False, judged=False))).run("x", list(TASKS))
    assert (record.success, record.failure_stage, record.outcome_source) == (False, "", "none")
    assert record.message.endswith("asks the operator")

    def no_frames(record):
        raise StageFailure("", "no complete frame set in 3 s")

    record = TrialFlow(steps(judge=no_frames)).run("x", list(TASKS))
    assert record.outcome_source == "none" and not record.camera.verdict.judged and record.camera.after_frames is None
    empty = ExecutionResult(False, FailureStage.GRASP, "closed on nothing", outcome_source=OutcomeSource.GRIPPER)
    record = TrialFlow(steps(execute=lambda v, s: empty, judge=camera(False, judged=False))).run("x", list(TASKS))
    assert (record.failure_stage, record.outcome_source) == ("grasp", "gripper")


def test_nothing_is_judged_before_the_arm_moved_or_after_a_stop():
    judged = []

    def judge(record):
        judged.append(record)
        return CameraVerdict("after", VisionVerdict(True, True, "", 1.0, "seen"))

    record = TrialFlow(steps(plan=PlanRejected("workspace", "out of bounds"), judge=judge)).run("x", list(TASKS))
    assert record.outcome_source == "pipeline"
    stopped = ExecutionResult(False, FailureStage.CANCELLED, "stopped during carry")
    record = TrialFlow(steps(execute=lambda v, s: stopped, judge=judge)).run("x", list(TASKS))
    assert record.failure_stage == "cancelled"
    assert judged == [] and TrialFlow(steps(judge=judge)).run("x", list(TASKS)).success
