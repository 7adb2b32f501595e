"""The simulated Franka Panda arm: joint state, forward kinematics of the grasp point, IK on a kinematic
copy of the arm (its own physics client, so solving never disturbs the scene) and joint-path execution
under position control. Poses are in the robot base frame."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pybullet as p
import pybullet_data
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.sim.physics import PhysicsClock
from vla_r1_ros.sim.textures import renderable_urdf

ARM_JOINTS = 7
ARM_JOINT_NAMES: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, ARM_JOINTS + 1))


class SimPanda:
    """The arm of the scene client's Panda (`load` once; `teleport` home at every reset) and its kinematic
    copy for IK."""

    def __init__(self, clock: PhysicsClock, config: dict[str, Any], world_T_base: RigidTransform) -> None:
        self.clock = clock
        self.config = config
        self.world_T_base = world_T_base
        self.base_T_world = world_T_base.inverse()
        robot = config["robot"]
        self.ee_link = int(robot["ee_link"])
        self.home_joints = np.asarray(robot["home_joints"], dtype=float)
        self.uid = -1  # the Panda in the scene client, set by `load`

        # The IK client holds a kinematic copy of the arm at the origin: it solves in the base frame
        # directly and never disturbs the simulated scene.
        self._ik_client = p.connect(p.DIRECT)
        if self._ik_client < 0:
            raise RuntimeError("could not connect a PyBullet client for IK")
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self._ik_client)
        self._ik_robot = p.loadURDF(robot["urdf"], useFixedBase=True, physicsClientId=self._ik_client)
        infos = [p.getJointInfo(self._ik_robot, j, physicsClientId=self._ik_client) for j in range(ARM_JOINTS)]
        self.lower = np.array([i[8] for i in infos])
        self.upper = np.array([i[9] for i in infos])
        self.max_velocity = np.array([i[11] for i in infos])
        names = tuple(i[1].decode() for i in infos)
        if names != ARM_JOINT_NAMES:
            raise RuntimeError(f"unexpected arm joints in {robot['urdf']}: {names}")
        self._movable = [
            j
            for j in range(p.getNumJoints(self._ik_robot, physicsClientId=self._ik_client))
            if p.getJointInfo(self._ik_robot, j, physicsClientId=self._ik_client)[2] != p.JOINT_FIXED
        ]

    def close(self) -> None:
        p.disconnect(physicsClientId=self._ik_client)

    def load(self) -> int:
        """Load the Panda into the scene client at world_T_base (once, when the world is built)."""
        self.uid = p.loadURDF(
            renderable_urdf(self.config["robot"]["urdf"]),
            self.world_T_base.translation.tolist(),
            self.world_T_base.quat_xyzw.tolist(),
            useFixedBase=True,
            physicsClientId=self.clock.client,
        )
        return self.uid

    def teleport(self, joints: np.ndarray) -> None:
        """Set the arm joints directly (reset only) and make the motors hold them."""
        for j, q in enumerate(joints):
            p.resetJointState(self.uid, j, float(q), 0.0, physicsClientId=self.clock.client)
        self.command(joints, np.zeros(ARM_JOINTS))

    # ------------------------------------------------------------------------------------ state

    def joint_positions(self) -> np.ndarray:
        with self.clock.lock:
            states = p.getJointStates(self.uid, list(range(ARM_JOINTS)), physicsClientId=self.clock.client)
        return np.array([s[0] for s in states])

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Grasp point (panda_grasptarget, between the fingertips): position and quat_xyzw, base frame."""
        with self.clock.lock:
            state = p.getLinkState(
                self.uid, self.ee_link, computeForwardKinematics=True, physicsClientId=self.clock.client
            )
        pose = self.base_T_world @ RigidTransform.from_pose(state[4], state[5])
        return pose.translation, pose.quat_xyzw

    def link_positions(self, names: tuple[str, ...]) -> np.ndarray:
        """(len(names), 3) origins of the named links as the arm stands now, base frame."""
        client = self.clock.client
        with self.clock.lock:
            index = {
                p.getJointInfo(self.uid, j, physicsClientId=client)[12].decode(): j
                for j in range(p.getNumJoints(self.uid, physicsClientId=client))
            }
            states = [
                p.getLinkState(self.uid, index[name], computeForwardKinematics=True, physicsClientId=client)
                for name in names
            ]
        return self.base_T_world.apply(np.array([state[4] for state in states], float).reshape(-1, 3))

    def within_limits(self, joints: np.ndarray, tolerance: float = 1e-6) -> bool:
        q = np.asarray(joints, dtype=float)
        return bool(np.all(q >= self.lower - tolerance) and np.all(q <= self.upper + tolerance))

    # -------------------------------------------------------------------------------------- IK

    def solve_ik(self, position: Any, quat_xyzw: Any, seed_joints: Any = None) -> np.ndarray | None:
        """Arm joints that put the grasp point at `position` with `quat_xyzw` (base frame), or None when
        the best solution misses by more than the configured tolerances or breaks a joint limit.

        Runs on the kinematic copy of the arm: PyBullet's damped-least-squares IK is re-seeded from its
        own answer until the pose error converges (one call alone is often centimetres off)."""
        target_pos = np.asarray(position, dtype=float)
        target_rot = Rotation.from_quat(np.asarray(quat_xyzw, dtype=float))
        ik = self.config["robot"]["ik"]
        pos_tol, rot_tol = float(ik["position_tolerance_m"]), float(ik["orientation_tolerance_rad"])
        with self.clock.lock:
            q = self.joint_positions() if seed_joints is None else np.asarray(seed_joints, dtype=float).copy()
            best, best_err = None, (np.inf, np.inf)
            for null_space in (True, False):
                for _ in range(int(ik["refinements"])):
                    q = self._ik_once(q, target_pos, target_rot, null_space)
                    err = self._ik_error(q, target_pos, target_rot)
                    if self.within_limits(q, 1e-3) and err[0] + err[1] < best_err[0] + best_err[1]:
                        best, best_err = np.clip(q, self.lower, self.upper), err
                    if err[0] < pos_tol / 10 and err[1] < rot_tol / 10:
                        break
                if best is not None and best_err[0] <= pos_tol and best_err[1] <= rot_tol:
                    return best
        return None

    def _ik_once(self, seed: np.ndarray, pos: np.ndarray, rot: Rotation, null_space: bool) -> np.ndarray:
        c, robot = self._ik_client, self._ik_robot
        for j, value in enumerate(seed):
            p.resetJointState(robot, j, float(value), physicsClientId=c)
        kwargs: dict[str, Any] = {}
        if null_space:
            # Limits and a rest posture (home) for every movable joint, fingers included.
            n_extra = len(self._movable) - ARM_JOINTS
            open_m = float(self.config["gripper"]["open_m"])
            lower = [*self.lower, *([0.0] * n_extra)]
            upper = [*self.upper, *([open_m] * n_extra)]
            kwargs = {
                "lowerLimits": lower,
                "upperLimits": upper,
                "jointRanges": [u - lo for u, lo in zip(upper, lower, strict=True)],
                "restPoses": [*seed, *([open_m] * n_extra)],
            }
        solution = p.calculateInverseKinematics(
            robot,
            self.ee_link,
            pos.tolist(),
            rot.as_quat().tolist(),
            maxNumIterations=int(self.config["robot"]["ik"]["max_iterations"]),
            residualThreshold=1e-6,
            physicsClientId=c,
            **kwargs,
        )
        return np.array(solution[:ARM_JOINTS])

    def _ik_error(self, q: np.ndarray, pos: np.ndarray, rot: Rotation) -> tuple[float, float]:
        c, robot = self._ik_client, self._ik_robot
        for j, value in enumerate(q):
            p.resetJointState(robot, j, float(value), physicsClientId=c)
        state = p.getLinkState(robot, self.ee_link, computeForwardKinematics=True, physicsClientId=c)
        pos_err = float(np.linalg.norm(np.array(state[4]) - pos))
        rot_err = float((Rotation.from_quat(state[5]) * rot.inv()).magnitude())
        return pos_err, rot_err

    # -------------------------------------------------------------------------------- motion

    def execute_joint_path(
        self,
        path: Any,
        speed_scaling: float = 0.5,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[np.ndarray]:
        """Move through joint waypoints (N, 7) from the current joints, under position control.

        Timing: each segment at the fastest rate that keeps every joint within max_velocity ×
        speed_scaling, and the whole path eased in and out (cubic), so it starts and ends at rest and
        never exceeds the scaled limits. Physics steps in chunks; the lock is released between chunks
        and `should_stop()` is checked there (the arm then holds where it is). Returns the grasp-point
        trace (base frame), one sample per chunk."""
        clock = self.clock
        waypoints = np.asarray(path, dtype=float).reshape(-1, ARM_JOINTS)
        if not 0.0 < speed_scaling <= 1.0:
            raise ValueError(f"speed_scaling must be in (0, 1] (got {speed_scaling})")
        for q in waypoints:
            if not self.within_limits(q, 1e-4):
                raise ValueError(f"joint waypoint outside the limits: {np.round(q, 4).tolist()}")
        waypoints = np.vstack([self.joint_positions(), waypoints])
        velocity = self.max_velocity * speed_scaling
        durations = np.max(np.abs(np.diff(waypoints, axis=0)) / velocity, axis=1)
        knots = np.concatenate([[0.0], np.cumsum(durations)])
        total = float(knots[-1])
        eased_total = 1.5 * total  # cubic ease 3τ² − 2τ³ peaks at 1.5× the mean rate
        steps = max(1, math.ceil(eased_total / clock.timestep))

        def at(path_time: float) -> np.ndarray:
            if total <= 0.0:
                return waypoints[-1]
            i = int(np.clip(np.searchsorted(knots, path_time, side="right") - 1, 0, len(durations) - 1))
            s = 0.0 if durations[i] <= 0 else (path_time - knots[i]) / durations[i]
            return waypoints[i] + np.clip(s, 0.0, 1.0) * (waypoints[i + 1] - waypoints[i])

        trace: list[np.ndarray] = []
        started = time.monotonic()
        step = 0
        while step < steps:
            if should_stop is not None and should_stop():
                self.hold()
                trace.append(self.ee_pose()[0])
                return trace
            with clock.lock:
                for _ in range(min(clock.chunk, steps - step)):
                    step += 1
                    tau = step / steps
                    target = at(total * (3 * tau**2 - 2 * tau**3))
                    ahead = at(total * (3 * min(tau + 1 / steps, 1) ** 2 - 2 * min(tau + 1 / steps, 1) ** 3))
                    self.command(target, (ahead - target) / clock.timestep)
                    p.stepSimulation(physicsClientId=clock.client)
                trace.append(self.ee_pose()[0])
            clock.pace(started, step)
        # Let the position controller catch up with the last waypoint.
        for _ in range(round(0.5 / clock.timestep / clock.chunk)):
            if should_stop is not None and should_stop():
                self.hold()
                break
            with clock.lock:
                self.command(waypoints[-1], np.zeros(ARM_JOINTS))
                clock.step_locked(clock.chunk)
                trace.append(self.ee_pose()[0])
                settled = np.max(np.abs(self.joint_positions() - waypoints[-1])) < 1e-3
            if settled:
                break
        return trace

    def hold(self) -> None:
        """Stop: command the current joints with zero velocity and let the arm come to rest."""
        with self.clock.lock:
            self.command(self.joint_positions(), np.zeros(ARM_JOINTS))
            self.clock.step_locked(self.clock.chunk)
            self.command(self.joint_positions(), np.zeros(ARM_JOINTS))

    def command(self, target: np.ndarray, velocity: np.ndarray) -> None:
        robot = self.config["robot"]
        p.setJointMotorControlArray(
            self.uid,
            list(range(ARM_JOINTS)),
            p.POSITION_CONTROL,
            targetPositions=[float(v) for v in target],
            targetVelocities=[float(v) for v in velocity],
            forces=[float(robot["arm_force_n"])] * ARM_JOINTS,
            positionGains=[float(robot["position_gain"])] * ARM_JOINTS,
            physicsClientId=self.clock.client,
        )
