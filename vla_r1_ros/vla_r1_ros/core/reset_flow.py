"""One self-reset as a sequence of injected steps (no ROS): the arm puts the scene back by itself.

observe -> perceive -> plan the moves from depth (`core.self_reset.plan_reset`) -> for each move: plan,
validate (the very checks of a trial: nothing moves on a failed one) and execute -> observe -> perceive ->
verify the layout (`core.self_reset.check_layout`). The planning node injects the steps that move the arm
and read the camera; tests inject plain functions. Every way a reset can end is a `ResetOutcome`: a reset
that cannot plan, is refused by a check, fails to execute or leaves a layout that does not verify says
why, and the caller (the trial runner) decides what comes next — never a trial on an unverified scene.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_r1_ros.core.outcomes import ExecutionResult
from vla_r1_ros.core.planning import PickPlacePlan, PlanRejected, ValidatedPlan


class ResetFailure(Exception):
    """A step of a self-reset could not finish (the arm did not reach its observe pose, no frame set)."""


@dataclass
class ResetSteps:
    observe: Callable[[], str]  # move the arm clear of the camera's view; "" or why not
    perceive: Callable[[], Any]  # a frame set captured now, as an RgbdView; raise ResetFailure when none comes
    plan_moves: Callable[[Any, np.random.Generator], list[Any]]  # (view, rng) -> ResetMoves; raise on impossible
    plan: Callable[[Any], PickPlacePlan]  # a ResetMove -> its pick-and-place plan
    validate: Callable[[Any, PickPlacePlan], ValidatedPlan]  # (the ResetMove, its plan); raise PlanRejected
    execute: Callable[[ValidatedPlan], ExecutionResult]
    check_layout: Callable[[Any], Any]  # view -> LayoutCheck (ok, message, positions)


@dataclass
class ResetOutcome:
    success: bool
    message: str
    moved: list[str] = field(default_factory=list)  # the objects moved, in order
    layout: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)  # verified: name -> x, y, yaw


def run_self_reset(steps: ResetSteps, seed: int, impossible: tuple[type[Exception], ...] = ()) -> ResetOutcome:
    """One self-reset with free spots drawn from `seed`; `impossible`: the errors `plan_moves` raises
    when the scene cannot be reset from what the camera shows (`core.self_reset.ResetImpossible`)."""
    moved: list[str] = []
    try:
        view = _look(steps)
        try:
            moves = steps.plan_moves(view, np.random.default_rng(seed))
        except impossible as exc:
            return ResetOutcome(False, f"cannot plan the reset: {exc}")
        for move in moves:
            try:
                validated = steps.validate(move, steps.plan(move))
            except PlanRejected as exc:
                return ResetOutcome(False, f"moving {move.object_name}: plan refused ({exc.check}): {exc}", moved)
            result = steps.execute(validated)
            if result.failure_stage:  # the reset names no instruction: only a failure is a verdict here
                return ResetOutcome(
                    False, f"moving {move.object_name}: {result.failure_stage}: {result.message}", moved
                )
            moved.append(move.object_name)
        check = steps.check_layout(_look(steps))
    except ResetFailure as exc:
        return ResetOutcome(False, str(exc), moved)
    if not check.ok:
        return ResetOutcome(False, f"the layout does not verify: {check.message}", moved)
    what = f"moved {', '.join(moved)}" if moved else "nothing to move"
    return ResetOutcome(True, f"{what}; layout verified", moved, dict(check.positions))


def _look(steps: ResetSteps) -> Any:
    """The arm out of the way, then a frame set captured after it got there."""
    blocked = steps.observe()
    if blocked:
        raise ResetFailure(f"the arm did not reach its observe pose: {blocked}")
    return steps.perceive()
