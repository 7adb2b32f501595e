"""The arm-executor interface: one protocol for the simulated Panda and for MoveIt.

An executor does two things for the planning node: it answers kinematic questions for the safety
validator (IK, joint limits, where the arm is) — so the plan is checked against the arm that will
move — and it executes a `ValidatedPlan`, the only kind of plan it accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vla_r1_ros.core.collision import Box, CollisionCheck, held_object_box
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.outcomes import OutcomeSource
from vla_r1_ros.core.planning import JointLimits, PickPlacePlan, SafetyLimits, ValidatedPlan, validate_either_way

# ExecutionResult.failure_stage values (a subset of core.outcomes.FailureStage).
EXECUTION_FAILURES = ("ik", "collision", "grasp", "wrong_object", "place", "execute", "cancelled")


@dataclass
class ExecutionResult:
    success: bool
    failure_stage: str = ""  # "" on success, else one of EXECUTION_FAILURES
    message: str = ""
    ee_path: list[np.ndarray] = field(default_factory=list)  # TCP positions during execution, base frame
    held_object: str | None = None  # what the gripper held after closing, when the executor can tell
    # Who judged `success` / `failure_stage` (core.outcomes.OutcomeSource): "simulator" for the sim
    # executor, "none" when the motion ran and nobody can tell yet whether the task was achieved.
    outcome_source: str = OutcomeSource.NONE
    objects_in_tray: tuple[str, ...] = ()  # what rests in the tray at the end, when the executor can tell
    target: str | None = None  # the object the instruction names, when the executor judged against it


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

    def collision_check(self, grasp_point: np.ndarray, held: Box) -> CollisionCheck:
        """The check of one joint sample against this arm's workcell (core/collision.py), for a plan
        that picks the object at `grasp_point` (so that object is not an obstacle) and then carries
        `held` (a box in the TCP frame)."""
        ...

    def execute(self, plan: ValidatedPlan, should_stop: Callable[[], bool], instruction: str = "") -> ExecutionResult:
        """Run the plan; return early with failure_stage "cancelled" once `should_stop()` is true.
        `instruction` is what the trial was asked to do: an executor that can see the scene (the
        simulator) judges the outcome against it."""
        ...

    def stop(self) -> None:
        """Halt any motion now (from another thread)."""
        ...


def validate_for(arm: ArmExecutor, plan: PickPlacePlan, limits: SafetyLimits) -> ValidatedPlan:
    """Validate `plan` against this arm as it is now: its IK, joint limits, gripper and workcell
    collisions, from where it stands (raises PlanRejected)."""
    collides = arm.collision_check(plan.grasp_surface_point, held_object_box(plan, limits.table_z))
    return validate_either_way(
        plan,
        limits,
        arm.solve_ik,
        arm.joint_limits(),
        arm.joint_names,
        arm.joint_positions(),
        arm.tcp_pose(),
        gripper_opening_m=arm.gripper_opening_m,
        collides=collides,
    )


def require_validated(plan: object) -> ValidatedPlan:
    """Executors call this first: a plan that did not come out of the validator never moves the arm."""
    if not isinstance(plan, ValidatedPlan) or not plan.is_issued():
        raise TypeError(f"executors run only a ValidatedPlan issued by core.planning.validate_plan, not {plan!r:.80}")
    return plan
