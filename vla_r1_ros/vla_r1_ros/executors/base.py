"""The arm-executor interface: one protocol for the simulated Panda and for MoveIt.

An executor does two things for the planning node: it answers kinematic questions for the safety
validator (IK, joint limits, where the arm is) — so the plan is checked against the arm that will
move — and it executes a `ValidatedPlan`, the only kind of plan it accepts, reporting a
`core.outcomes.ExecutionResult`. What both executors do alike lives here once (`ExecutorBase`: the stop
flag, a failed grasp and the retreat after it; `empty_grasp`: what the finger width says).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from vla_r1_ros.core.collision import NOTHING_SEEN, Box, CollisionCheck, SeenObstacles
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.outcomes import ExecutionResult, FailureStage
from vla_r1_ros.core.planning import (
    JointLimits,
    PickPlacePlan,
    PlanningParams,
    SafetyLimits,
    ValidatedPlan,
    grasp_candidates,
    held_object_box,
    validate_candidates,
    validate_either_way,
)


class ArmExecutor(Protocol):
    name: str
    joint_names: tuple[str, ...]
    gripper_opening_m: float  # how wide the open gripper is between the fingers

    def joint_limits(self) -> JointLimits: ...

    def joint_positions(self) -> np.ndarray: ...

    def tcp_pose(self) -> RigidTransform:
        """Where the tool centre point is now (base frame)."""
        ...

    def solve_ik(
        self, position: np.ndarray, quat_xyzw: np.ndarray, seed_joints: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Joints that put the TCP at the pose, or None when it is unreachable (the reachability check)."""
        ...

    def collision_check(self, grasp_point: np.ndarray, held: Box, seen: SeenObstacles = NOTHING_SEEN) -> CollisionCheck:
        """The check of one joint sample against this arm's workcell (core/collision.py), for a plan
        that picks the object at `grasp_point` (so that object is not an obstacle) and then carries
        `held` (a box in the TCP frame); `seen` is what the trial's frame set adds (the tray as measured,
        the depth clutter boxes), checked like the configured boxes."""
        ...

    def arm_chain(self) -> np.ndarray:
        """(K, 3) base frame: the robot's base, the origins of its arm links (config/workcell.yaml
        `collision.depth_clutter.arm_links`) and the TCP, as the arm stands now — the region depth clutter
        leaves out (`core.clutter`)."""
        ...

    def execute(self, plan: ValidatedPlan, should_stop: Callable[[], bool], instruction: str = "") -> ExecutionResult:
        """Run the plan; return early with failure_stage `cancelled` once `should_stop()` is true.
        `instruction` is what the trial was asked to do: an executor that can see the scene (the
        simulator) judges the outcome against it."""
        ...

    def stop(self) -> None:
        """Halt any motion now (from another thread)."""
        ...

    def cycle_gripper(self) -> tuple[float, float]:
        """Open the (empty) gripper, close it, open it again: the finger widths it reported open and
        closed (`vla-r1 doctor`). Raises RuntimeError when the gripper does not move."""
        ...

    def finger_width(self) -> float:
        """How far apart the fingers are now (m): what a real gripper tells of what it holds."""
        ...

    def configuration_problems(self) -> list[str]:
        """What the executor's config names (groups, links, named states, controllers) that the arm
        lacks, one line each (`vla-r1 doctor`)."""
        ...

    def observe(self, should_stop: Callable[[], bool]) -> str:
        """Move the arm to its observe pose, clear of the table and the tray in the camera's view (the
        camera judge's after frame set, the self-reset's frames); "" once there, else why not."""
        ...


def validate_for(
    arm: ArmExecutor,
    plan: PickPlacePlan,
    limits: SafetyLimits,
    params: PlanningParams | None = None,
    seen: SeenObstacles = NOTHING_SEEN,
) -> ValidatedPlan:
    """Validate `plan` against this arm as it is now: its IK, joint limits, gripper and workcell
    collisions (with what the trial's frame set saw, `seen`), from where it stands. Each grasp candidate
    (`plan` turned and shifted as `params` says, `core.planning.grasp_candidates`; without `params` the
    plan's own grasp only) is tried in order, and the first that passes is returned, naming the ones
    refused before it; PlanRejected names every grasp tried when none passes."""

    def validate(candidate: PickPlacePlan, grasps_tried: tuple[str, ...]) -> ValidatedPlan:
        held = held_object_box(candidate, limits.table_z)
        collides = arm.collision_check(candidate.grasp_surface_point, held, seen)
        return validate_either_way(
            candidate,
            limits,
            arm.solve_ik,
            arm.joint_limits(),
            arm.joint_names,
            arm.joint_positions(),
            arm.tcp_pose(),
            gripper_opening_m=arm.gripper_opening_m,
            collides=collides,
            grasps_tried=grasps_tried,
        )

    return validate_candidates(grasp_candidates(plan, params or PlanningParams()), validate)


def require_validated(plan: object) -> ValidatedPlan:
    """Executors call this first: a plan that did not come out of the validator never moves the arm."""
    if not isinstance(plan, ValidatedPlan) or not plan.is_issued():
        raise TypeError(f"executors run only a ValidatedPlan issued by core.planning.validate_plan, not {plan!r:.80}")
    return plan


def empty_grasp(width_m: float, min_held_width_m: float) -> str:
    """Why a grasp whose fingers stopped `width_m` apart holds nothing ("" when it may hold something):
    the finger width is what a real gripper tells, and below `min_held_width_m` nothing is between them."""
    if width_m >= min_held_width_m:
        return ""
    return (
        f"gripper closed to {width_m * 1000:.0f} mm (< {min_held_width_m * 1000:.0f} mm): nothing between the fingers"
    )


class ExecutorBase:
    """What both executors do alike: the stop flag `stop()` sets from another thread, the test every step
    polls (`stopping`), and a failed grasp — fail at `grasp`, open the hand and back up the checked
    descent (`ValidatedPlan.retreat_after_grasp`) to the pre-grasp pose. Each executor says how its
    hand opens (`_open_gripper`) and how its arm follows joint samples (`_follow`)."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        """Halt any motion now (from another thread)."""
        self._stop.set()

    def _stopping(self, should_stop: Callable[[], bool]) -> Callable[[], bool]:
        """True once this executor was stopped or the trial's `should_stop()` is."""
        return lambda: self._stop.is_set() or should_stop()

    def _open_gripper(self) -> None:
        raise NotImplementedError

    def _follow(
        self, plan: ValidatedPlan, samples: np.ndarray, from_joints: np.ndarray, stopping: Callable[[], bool]
    ) -> list[np.ndarray]:
        """Move the arm through checked joint `samples` from `from_joints` (not starting, or halting where
        the executor can, once `stopping()` is true); the TCP positions on the way. The retreat after a
        failed grasp runs through it, where nothing that happens changes the trial's outcome any more."""
        raise NotImplementedError

    def _grasp_failed(
        self,
        result: ExecutionResult,
        plan: ValidatedPlan,
        message: str,
        at_joints: np.ndarray,
        stopping: Callable[[], bool],
    ) -> ExecutionResult:
        """End `result` at `grasp`, then open the hand and back up to the pre-grasp pose: a validated pose
        above the miss (the trial has failed already, so the retreat is best effort)."""
        result.fail(FailureStage.GRASP, message)
        self._open_gripper()
        result.ee_path += self._follow(plan, plan.retreat_after_grasp(), at_joints, stopping)
        return result
