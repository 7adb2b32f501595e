"""The trial state machine (no ROS): stage order, and how every way a trial ends maps to a failure_stage."""

from __future__ import annotations

import numpy as np
import pytest

from vla_r1_ros.core.lifting import LiftedPrediction, LiftError
from vla_r1_ros.core.planning import PlanRejected
from vla_r1_ros.core.trial_flow import Prediction, StageFailure, TrialFlow, TrialSteps
from vla_r1_ros.executors.base import ExecutionResult

GOOD = Prediction(stamp_ns=1, valid=True, box_px=(1.0, 2.0, 3.0, 4.0), waypoints_px=np.zeros((2, 2)))


class FakeValidated:
    plan = "the plan (maybe half-turned)"


def steps(**overrides) -> TrialSteps:
    def fail(exc):
        def raise_it(*args):
            raise exc

        return raise_it

    defaults = {
        "perceive": lambda: None,
        "predict": lambda instruction, tasks: GOOD,
        "lift": lambda prediction: LiftedPrediction(None, None, "panda_link0"),
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


@pytest.mark.parametrize(
    ("overrides", "stage"),
    [
        ({"perceive": StageFailure("timeout", "no camera")}, "timeout"),
        ({"predict": StageFailure("timeout", "no answer")}, "timeout"),
        ({"predict": lambda i, t: Prediction(stamp_ns=1, valid=False, error="no <output>")}, "parse"),
        ({"predict": lambda i, t: Prediction(stamp_ns=1, valid=True, box_px=(0, 0, 1, 1))}, "parse"),
        ({"lift": LiftError("depth_hole", "hole")}, "lift"),
        ({"plan": PlanRejected("lift", "no waypoints")}, "lift"),
        ({"validate": PlanRejected("workspace", "outside")}, "safety"),
        ({"validate": PlanRejected("clearance", "too low")}, "safety"),
        ({"validate": PlanRejected("reachability", "no IK")}, "ik"),
        ({"execute": lambda v, s: ExecutionResult(False, "grasp", "closed on nothing")}, "grasp"),
        ({"execute": RuntimeError("simulator crashed")}, "execute"),
    ],
)
def test_failures_map_to_episode_failure_stages(overrides, stage):
    record = TrialFlow(steps(**overrides)).run("x", [])
    assert not record.success and record.failure_stage == stage and record.message


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
    dry = TrialFlow(run).run("x", [], plan_only=True)
    assert not dry.success and dry.failure_stage == "dry_run" and not executed  # a dry run is never a success
    polls = iter([False, False, True])
    record = TrialFlow(run).run("x", [], should_stop=lambda: next(polls, True))
    assert record.failure_stage == "cancelled" and record.stage_names == ["perceive", "predict"] and not executed
