"""The simulated Panda of the PyBullet workcell as an `ArmExecutor`.

It follows the validated joint path segment by segment (the workcell interpolates in joint space
within the scaled velocity limits), works the gripper, and judges the outcome by the physics
(outcome_source "simulator"): which object is between the fingers after closing, and, once the arm has
released, which objects rest in the tray — success only when the object the instruction names is one
of them (`core.outcomes.judge_sim_placement`; another object there is `wrong_object`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from vla_r1_ros.core.collision import Box, CollisionCheck
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.outcomes import OutcomeSource, judge_sim_placement
from vla_r1_ros.core.planning import GripperAction, JointLimits, MotionSegment, ValidatedPlan
from vla_r1_ros.executors.base import ExecutionResult, require_validated
from vla_r1_ros.sim.collision import CollisionScene
from vla_r1_ros.sim.workcell import Workcell

SETTLE_AFTER_RELEASE_S = 0.6


class SimArmExecutor:
    name = "sim"

    def __init__(self, workcell: Workcell):
        self.workcell = workcell
        self.joint_names = tuple(workcell.arm_joint_names)
        self.gripper_opening_m = 2.0 * float(workcell.config["gripper"]["open_m"])  # open_m is per finger
        self.min_held_width_m = float(workcell.config["gripper"]["min_held_width_m"])
        self._stop = threading.Event()

    def joint_limits(self) -> JointLimits:
        return JointLimits(*self.workcell.joint_limits())

    def joint_positions(self) -> np.ndarray:
        return self.workcell.joint_positions()

    def tcp_pose(self) -> RigidTransform:
        return RigidTransform.from_pose(*self.workcell.ee_pose())

    def solve_ik(
        self, position: np.ndarray, quat_xyzw: np.ndarray, seed_joints: np.ndarray | None = None
    ) -> np.ndarray | None:
        return self.workcell.solve_ik(position, quat_xyzw, seed_joints)

    def collision_check(self, grasp_point: np.ndarray, held: Box) -> CollisionCheck:
        """PyBullet's closest points against the workcell as it is now (the scene's tray and objects)."""
        scene = CollisionScene(tuple(self.workcell.obstacles(grasp_point)), held)
        return self.workcell.collision.check(scene)

    def stop(self) -> None:
        self._stop.set()

    def execute(self, plan: ValidatedPlan, should_stop: Callable[[], bool], instruction: str = "") -> ExecutionResult:
        """Run the plan and judge it against `instruction` (an empty or ambiguous instruction cannot be
        judged: success False, outcome_source "none")."""
        plan = require_validated(plan)
        self._stop.clear()

        def stopping() -> bool:
            return self._stop.is_set() or should_stop()

        result = ExecutionResult(success=False, outcome_source=OutcomeSource.SIMULATOR)
        drift = plan.start_drift(self.workcell.joint_positions())
        if drift:
            result.failure_stage, result.message = "execute", drift
            return result
        self.workcell.set_gripper(closed=False)
        carrying = False  # between a successful grasp and the release
        for step in plan.steps:
            if stopping():
                return self._cancelled(result, step.name)
            if isinstance(step, MotionSegment):
                result.ee_path += self.workcell.execute_joint_path(step.joints, plan.plan.speed_scaling, stopping)
                if stopping():
                    return self._cancelled(result, step.name)
                error = plan.tracking_error(step, self.workcell.joint_positions())
                if error:
                    result.failure_stage, result.message = "execute", error
                    return result
                if carrying and not self.workcell.holding(result.held_object):
                    result.failure_stage = "grasp"
                    result.message = f"{result.held_object} slipped out of the gripper during {step.name}"
                    return result
            elif isinstance(step, GripperAction) and step.close:
                opening = self.workcell.set_gripper(closed=True)
                # What a real gripper tells: how far apart the fingers stopped. Which object they hold
                # only the simulator knows (contacts).
                held = [o.name for o in self.workcell.scene().objects if self.workcell.holding(o.name)]
                if opening < self.min_held_width_m or len(held) != 1:
                    result.failure_stage = "grasp"
                    result.message = (
                        f"gripper closed to {opening * 1000:.0f} mm (< {self.min_held_width_m * 1000:.0f} mm): "
                        "nothing between the fingers"
                        if opening < self.min_held_width_m or not held
                        else f"gripper closed on several objects: {held}"
                    )
                    result.ee_path += self._retreat(plan, stopping)
                    return result
                result.held_object, carrying = held[0], True
            else:
                self.workcell.set_gripper(closed=False)
                carrying = False
        self.workcell.step(SETTLE_AFTER_RELEASE_S)
        result.ee_path.append(self.workcell.ee_pose()[0])
        result.objects_in_tray = self.workcell.objects_in_tray()
        verdict = judge_sim_placement(instruction, self.workcell.scene().objects, result.objects_in_tray)
        result.success, result.failure_stage, result.message = verdict.success, verdict.failure_stage, verdict.message
        result.outcome_source, result.target = verdict.outcome_source, verdict.target
        return result

    def _retreat(self, plan: ValidatedPlan, should_stop: Callable[[], bool]) -> list[np.ndarray]:
        """After an empty grasp: open, and back up the checked descent to the pre-grasp pose."""
        self.workcell.set_gripper(closed=False)
        return self.workcell.execute_joint_path(plan.retreat_after_grasp(), plan.plan.speed_scaling, should_stop)

    def _cancelled(self, result: ExecutionResult, during: str) -> ExecutionResult:
        result.failure_stage, result.message = "cancelled", f"stopped during {during}"
        return result
