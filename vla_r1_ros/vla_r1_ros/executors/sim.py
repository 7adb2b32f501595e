"""The simulated Panda of the PyBullet workcell as an `ArmExecutor`.

It follows the validated joint path segment by segment (the workcell interpolates in joint space
within the scaled velocity limits), works the gripper, and judges the outcome by the physics
(outcome_source "simulator"): which object is between the fingers after closing, and, once the arm has
released, which objects rest in the tray — success only when the object the instruction names is one
of them (`core.outcomes.judge_sim_placement`; another object there is `wrong_object`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vla_r1_ros.core.collision import NOTHING_SEEN, Box, CollisionCheck, SeenObstacles
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.outcomes import ExecutionResult, FailureStage, OutcomeSource, judge_sim_placement
from vla_r1_ros.core.planning import GripperAction, JointLimits, MotionSegment, ValidatedPlan
from vla_r1_ros.executors.base import ExecutorBase, empty_grasp, require_validated
from vla_r1_ros.sim.collision import CollisionScene
from vla_r1_ros.sim.workcell import Workcell

SETTLE_AFTER_RELEASE_S = 0.6


class SimArmExecutor(ExecutorBase):
    name = "sim"

    def __init__(self, workcell: Workcell):
        super().__init__()
        self.workcell = workcell
        self.joint_names = tuple(workcell.arm_joint_names)
        self.gripper_opening_m = 2.0 * float(workcell.config["gripper"]["open_m"])  # open_m is per finger
        self.min_held_width_m = float(workcell.config["gripper"]["min_held_width_m"])
        self.arm_links = tuple(workcell.config["collision"]["depth_clutter"]["arm_links"])

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

    def collision_check(self, grasp_point: np.ndarray, held: Box, seen: SeenObstacles = NOTHING_SEEN) -> CollisionCheck:
        """PyBullet's closest points against the workcell as it is now (the scene's tray and objects) and
        what the trial's frame set saw (`seen`: the measured tray, the depth clutter)."""
        scene = CollisionScene(tuple(self.workcell.obstacles(grasp_point, seen)), held)
        return self.workcell.collision.check(scene)

    def arm_chain(self) -> np.ndarray:
        """The base, the origins of `collision.depth_clutter.arm_links` and the TCP, as the arm stands now."""
        links = self.workcell.arm.link_positions(self.arm_links)
        return np.array([np.zeros(3), *links, self.workcell.ee_pose()[0]])

    def _open_gripper(self) -> None:
        self.workcell.set_gripper(closed=False)

    def cycle_gripper(self) -> tuple[float, float]:
        opened = self.workcell.set_gripper(closed=False)
        closed = self.workcell.set_gripper(closed=True)
        self.workcell.set_gripper(closed=False)
        return opened, closed

    def configuration_problems(self) -> list[str]:
        """None left to find: the simulated Panda is built from the config (a link the collision config
        names that its URDF lacks already refused the executor)."""
        return []

    def finger_width(self) -> float:
        return float(np.sum(self.workcell.finger_positions()))

    def observe(self, should_stop: Callable[[], bool]) -> str:
        """The workcell's home pose: the camera looks at the arm's front, so the arm at home hides neither
        the table nor the tray (config/camera.yaml)."""
        self._stop.clear()
        stopping = self._stopping(should_stop)
        self.workcell.home(should_stop=stopping)  # in joint space: from above the tray the way up is free
        return "stopped on the way to the observe pose" if stopping() else ""

    def _follow(
        self, plan: ValidatedPlan, samples: np.ndarray, from_joints: np.ndarray, stopping: Callable[[], bool]
    ) -> list[np.ndarray]:
        return self.workcell.execute_joint_path(samples, plan.plan.speed_scaling, stopping)

    def execute(self, plan: ValidatedPlan, should_stop: Callable[[], bool], instruction: str = "") -> ExecutionResult:
        """Run the plan and judge it against `instruction` (an empty or ambiguous instruction cannot be
        judged: success False, outcome_source none)."""
        plan = require_validated(plan)
        self._stop.clear()
        stopping = self._stopping(should_stop)
        result = ExecutionResult(success=False, outcome_source=OutcomeSource.SIMULATOR)
        drift = plan.start_drift(self.workcell.joint_positions())
        if drift:
            return result.fail(FailureStage.EXECUTE, drift)
        if not plan.plan.holds_from_start:
            self._open_gripper()
        carrying = False  # between a successful grasp and the release
        joints = plan.start_joints
        for step in plan.steps:
            if stopping():
                return result.fail(FailureStage.CANCELLED, f"stopped during {step.name}")
            if isinstance(step, MotionSegment):
                result.ee_path += self._follow(plan, step.joints, joints, stopping)
                if stopping():
                    return result.fail(FailureStage.CANCELLED, f"stopped during {step.name}")
                error = plan.tracking_error(step, self.workcell.joint_positions())
                if error:
                    return result.fail(FailureStage.EXECUTE, error)
                if carrying and not self.workcell.holding(result.held_object):
                    return result.fail(
                        FailureStage.GRASP, f"{result.held_object} slipped out of the gripper during {step.name}"
                    )
                joints = step.joints[-1]
            elif isinstance(step, GripperAction) and step.close:
                opening = self.workcell.set_gripper(closed=True)
                # What a real gripper tells: how far apart the fingers stopped. Which object they hold
                # only the simulator knows (contacts).
                held = [o.name for o in self.workcell.scene().objects if self.workcell.holding(o.name)]
                empty = empty_grasp(opening, self.min_held_width_m)
                if empty or len(held) != 1:
                    why = empty or (
                        f"gripper closed on several objects: {held}"
                        if held
                        else f"gripper closed to {opening * 1000:.0f} mm on no object: nothing between the fingers"
                    )
                    return self._grasp_failed(result, plan, why, joints, stopping)
                result.held_object, carrying = held[0], True
            else:
                self._open_gripper()
                carrying = False
        self.workcell.step(SETTLE_AFTER_RELEASE_S)
        result.ee_path.append(self.workcell.ee_pose()[0])
        result.objects_in_tray = self.workcell.objects_in_tray()
        verdict = judge_sim_placement(instruction, self.workcell.scene().objects, result.objects_in_tray)
        result.success, result.failure_stage, result.message = verdict.success, verdict.failure_stage, verdict.message
        result.outcome_source = verdict.outcome_source
        return result
