"""The self-reset's flow (`core.reset_flow.run_self_reset`) with plain steps: what it does in which order, and
that every way it can fail is named and moves nothing further (no ROS, no simulator: the steps are the
planning node's, injected as TrialFlow's are; the real steps run in test_self_reset_trials.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_r1_ros.core.outcomes import ExecutionResult, FailureStage
from vla_r1_ros.core.planning import PlanRejected
from vla_r1_ros.core.reset_flow import ResetFailure, ResetSteps, run_self_reset


@dataclass(frozen=True)
class Move:
    object_name: str


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str
    positions: dict


class Impossible(Exception):
    pass


def steps(calls: list, moves=("red_cube", "blue_mug"), refuse="", fail="", verified=True, blocked="", no_frame=False):
    def observe():
        calls.append("observe")
        return blocked

    def perceive():
        calls.append("perceive")
        if no_frame:
            raise ResetFailure("no complete frame set in 3 s")
        return f"view{calls.count('perceive')}"

    def plan_moves(view, rng):
        calls.append(("plan_moves", view))
        assert isinstance(rng, np.random.Generator)
        if moves is None:
            raise Impossible("no free spot for red_cube")
        return [Move(name) for name in moves]

    def plan(move):
        calls.append(("plan", move.object_name))
        return move.object_name

    def validate(move, plan):
        assert move.object_name == plan
        if plan == refuse:
            raise PlanRejected("collision", f"{plan} would hit the tray wall")
        return plan

    def execute(plan):
        calls.append(("execute", plan))
        if plan == fail:
            return ExecutionResult(False, FailureStage.GRASP, "closed on nothing")
        return ExecutionResult(False)  # no instruction: nobody judges a reset move, only its failure counts

    def check_layout(view):
        calls.append(("check", view))
        return Check(verified, "" if verified else "blue_mug not found", {"red_cube": (0.4, 0.0, 0.1)})

    return ResetSteps(observe, perceive, plan_moves, plan, validate, execute, check_layout)


def test_a_reset_moves_every_planned_object_then_looks_again_and_verifies():
    calls: list = []
    outcome = run_self_reset(steps(calls), seed=3, impossible=(Impossible,))
    assert outcome.success and outcome.moved == ["red_cube", "blue_mug"]
    assert outcome.layout == {"red_cube": (0.4, 0.0, 0.1)}
    assert calls == [
        "observe",
        "perceive",
        ("plan_moves", "view1"),
        ("plan", "red_cube"),
        ("execute", "red_cube"),
        ("plan", "blue_mug"),
        ("execute", "blue_mug"),
        "observe",
        "perceive",
        ("check", "view2"),  # the layout is verified on a frame set taken after the moves
    ]


def test_every_failure_is_named_and_nothing_moves_after_it():
    calls: list = []
    refused = run_self_reset(steps(calls, refuse="red_cube"), 0, (Impossible,))
    assert not refused.success and "plan refused (collision)" in refused.message
    assert not any(c[0] == "execute" for c in calls if isinstance(c, tuple))

    calls = []
    failed = run_self_reset(steps(calls, fail="red_cube"), 0, (Impossible,))
    assert not failed.success and "grasp" in failed.message and failed.moved == []
    assert ("execute", "blue_mug") not in calls

    impossible = run_self_reset(steps([], moves=None), 0, (Impossible,))
    assert not impossible.success and "no free spot" in impossible.message

    unverified = run_self_reset(steps([]), 0, (Impossible,))
    assert unverified.success
    wrong = run_self_reset(steps([], verified=False), 0, (Impossible,))
    assert not wrong.success and "does not verify: blue_mug not found" in wrong.message and not wrong.layout

    calls = []
    blocked = run_self_reset(steps(calls, blocked="MoveIt found no motion plan"), 0, (Impossible,))
    assert not blocked.success and "observe pose: MoveIt found no motion plan" in blocked.message
    assert calls == ["observe"]  # no frame is taken with the arm in the way

    no_frame = run_self_reset(steps([], no_frame=True), 0, (Impossible,))
    assert not no_frame.success and "no complete frame set" in no_frame.message


def test_nothing_to_move_still_verifies_the_layout():
    calls: list = []
    outcome = run_self_reset(steps(calls, moves=()), 0, (Impossible,))
    assert outcome.success and outcome.moved == [] and outcome.message.startswith("nothing to move")
    assert ("check", "view2") in calls
