"""The simulated Panda's parallel gripper: the two finger joints under position control with a squeeze
force, their measured positions, and which bodies both fingers touch."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pybullet as p

from vla_r1_ros.sim.physics import PhysicsClock


class SimGripper:
    """The fingers of the scene client's Panda (`attach` at every reset)."""

    def __init__(self, clock: PhysicsClock, config: dict[str, Any]) -> None:
        self.clock = clock
        self.config = config["gripper"]
        self.joint_names: tuple[str, ...] = tuple(config["robot"]["finger_joint_names"])
        self.joints = [int(j) for j in config["robot"]["finger_joints"]]
        self.open_m = float(self.config["open_m"])  # per finger
        self.robot = -1

    def attach(self, robot: int) -> None:
        """Take the fingers of the Panda `robot`: friction, open, held open."""
        self.robot = robot
        c, friction = self.clock.client, float(self.config["finger_friction"])
        for finger in self.joints:
            p.changeDynamics(robot, finger, lateralFriction=friction, spinningFriction=0.01, physicsClientId=c)
            p.resetJointState(robot, finger, self.open_m, 0.0, physicsClientId=c)
        self.command(self.open_m)

    def positions(self) -> np.ndarray:
        """Both finger joints (m from closed), in `joint_names` order."""
        with self.clock.lock:
            states = p.getJointStates(self.robot, self.joints, physicsClientId=self.clock.client)
        return np.array([s[0] for s in states])

    def command(self, target: float) -> None:
        force = float(self.config["force_n"])
        p.setJointMotorControlArray(
            self.robot,
            self.joints,
            p.POSITION_CONTROL,
            targetPositions=[target] * len(self.joints),
            forces=[force] * len(self.joints),
            physicsClientId=self.clock.client,
        )

    def move(self, closed: bool) -> float:
        """Close (squeeze with the configured force) or open the fingers; wait until they stop moving.
        Returns the opening between the fingers (m): near 0 closed on nothing, the object's width on it."""
        clock = self.clock
        target = 0.0 if closed else self.open_m
        started = time.monotonic()
        chunks = max(1, round(float(self.config["settle_max_s"]) / clock.timestep / clock.chunk))
        previous = None
        for i in range(chunks):
            with clock.lock:
                self.command(target)
                clock.step_locked(clock.chunk)
                opening = float(np.sum(self.positions()))
            clock.pace(started, (i + 1) * clock.chunk)
            if previous is not None and abs(opening - previous) < 1e-5 and i >= 3:
                break
            previous = opening
        return opening

    def touching(self, uid: int) -> bool:
        """Both fingers touch body `uid`."""
        with self.clock.lock:
            return all(
                p.getContactPoints(self.robot, uid, linkIndexA=f, physicsClientId=self.clock.client)
                for f in self.joints
            )
