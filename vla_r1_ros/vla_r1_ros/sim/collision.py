"""PyBullet collision checking of arm configurations against the workcell's boxes (core/collision.py).

A checker owns a private DIRECT client with a kinematic copy of the Panda at the origin (the base
frame) and the obstacle boxes: a sample is checked by setting the copy's joints and asking PyBullet for
the closest points between each checked link (and the held object's box) and each obstacle, so the
simulated scene is never disturbed. It needs nothing but the configs, so it also works offline.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pybullet as p
import pybullet_data

from vla_r1_ros.core.collision import HELD_OBJECT, Box, Collision, CollisionCheck
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.sim.arm import ARM_JOINTS


def create_box_body(client: int, box: Box, world_T_base: RigidTransform | None = None, rgba: Any = None) -> int:
    """A static box body; `world_T_base` None means the client's world is the base frame. With `rgba`
    it is also drawn (the simulator's camera mount), else it only collides."""
    half = (np.asarray(box.size, dtype=float) / 2).tolist()
    shape = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=client)
    visual = (
        -1
        if rgba is None
        else p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=list(rgba), physicsClientId=client)
    )
    pose = box.pose if world_T_base is None else world_T_base @ box.pose
    return p.createMultiBody(
        0.0, shape, visual, pose.translation.tolist(), pose.quat_xyzw.tolist(), physicsClientId=client
    )


class PandaCollisionChecker:
    """`set_obstacles(boxes)`, then `check(held)` gives a CollisionCheck for the validator."""

    def __init__(self, workcell_config: dict[str, Any]) -> None:
        robot, collision = workcell_config["robot"], workcell_config["collision"]
        self.margin_m = float(collision["margin_m"])
        self._ee_link = int(robot["ee_link"])
        self._held_link = self._ee_link
        self._lock = threading.Lock()
        self._client = p.connect(p.DIRECT)
        if self._client < 0:
            raise RuntimeError("could not connect a PyBullet client for collision checking")
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self._client)
        self._robot = p.loadURDF(robot["urdf"], useFixedBase=True, physicsClientId=self._client)
        link_index = {
            p.getJointInfo(self._robot, j, physicsClientId=self._client)[12].decode(): j
            for j in range(p.getNumJoints(self._robot, physicsClientId=self._client))
        }
        missing = [name for name in collision["robot_links"] if name not in link_index]
        if missing:
            raise ValueError(f"collision.robot_links not in {robot['urdf']}: {missing}")
        self._links = {link_index[name]: name for name in collision["robot_links"]}
        self._link_index = link_index
        # Checked with the fingers open: the widest the hand is on the way to a grasp.
        for finger in robot["finger_joints"]:
            p.resetJointState(
                self._robot, int(finger), float(workcell_config["gripper"]["open_m"]), physicsClientId=self._client
            )
        self._obstacles: list[tuple[int, Box]] = []
        self._held: tuple[int, Box] | None = None

    def close(self) -> None:
        p.disconnect(physicsClientId=self._client)

    def set_obstacles(self, boxes: Sequence[Box]) -> None:
        with self._lock:
            for uid, _ in self._obstacles:
                p.removeBody(uid, physicsClientId=self._client)
            self._obstacles = [(create_box_body(self._client, box), box) for box in boxes]

    @property
    def obstacles(self) -> list[Box]:
        return [box for _, box in self._obstacles]

    def check(self, held: Box | None, held_in_link: str | None = None) -> CollisionCheck:
        """A check against the current obstacles; `held` (a box in the TCP frame, or in the frame of
        link `held_in_link`) joins the hand while the check is told the arm is carrying."""
        with self._lock:
            self._held_link = self._ee_link if held_in_link is None else self._link_index[held_in_link]
            if self._held is not None:
                p.removeBody(self._held[0], physicsClientId=self._client)
                self._held = None
            if held is not None:
                self._held = (
                    create_box_body(self._client, Box(HELD_OBJECT, held.size, RigidTransform.identity())),
                    held,
                )
        return self.first_collision

    def first_collision(self, joints: np.ndarray, carrying: bool) -> Collision | None:
        """The deepest contact of a checked link (or, carrying, the held object) with an obstacle, or None."""
        return min(self.contacts(joints, carrying), key=lambda hit: hit.distance_m, default=None)

    def contacts(self, joints: np.ndarray, carrying: bool) -> list[Collision]:
        """Every (link or held object, obstacle) pair closer than the margin, with its deepest distance."""
        c = self._client
        with self._lock:
            for j, q in enumerate(np.asarray(joints, dtype=float)[:ARM_JOINTS]):
                p.resetJointState(self._robot, j, float(q), physicsClientId=c)
            bodies: list[tuple[int, dict[int, str] | None]] = [(self._robot, self._links)]
            if carrying and self._held is not None:
                uid, held = self._held
                state = p.getLinkState(self._robot, self._held_link, computeForwardKinematics=True, physicsClientId=c)
                pose = RigidTransform.from_pose(state[4], state[5]) @ held.pose
                p.resetBasePositionAndOrientation(
                    uid, pose.translation.tolist(), pose.quat_xyzw.tolist(), physicsClientId=c
                )
                bodies.append((uid, None))
            deepest: dict[tuple[str, str], float] = {}
            for body, links in bodies:
                for obstacle_uid, obstacle in self._obstacles:
                    for point in p.getClosestPoints(body, obstacle_uid, self.margin_m, physicsClientId=c):
                        if links is not None and point[3] not in links:
                            continue
                        pair = (HELD_OBJECT if links is None else links[point[3]], obstacle.name)
                        deepest[pair] = min(float(point[8]), deepest.get(pair, np.inf))
            return [Collision(link, obstacle, distance) for (link, obstacle), distance in deepest.items()]
