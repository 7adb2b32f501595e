"""PyBullet collision checking of arm configurations against the workcell's boxes (core/collision.py).

A checker owns a private DIRECT client with a kinematic copy of the Panda at the origin (the base
frame) and the obstacle boxes: a sample is checked by setting the copy's joints and asking PyBullet for
the closest points between each checked link (and the held object's box) and each obstacle, so the
simulated scene is never disturbed. It needs nothing but the configs, so it also works offline.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
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


@dataclass(frozen=True, eq=False)
class CollisionScene:
    """What one validation checks against: the obstacles and, while carrying, the held object's box
    (in the TCP frame, or in the frame of link `held_in_link`)."""

    obstacles: tuple[Box, ...]
    held: Box | None = None
    held_in_link: str | None = None


class PandaCollisionChecker:
    """`check(CollisionScene(...))` gives a CollisionCheck for the validator. Thread-safe: each check
    loads its own scene into the client when another check used it in between."""

    def __init__(self, workcell_config: dict[str, Any]) -> None:
        robot, collision = workcell_config["robot"], workcell_config["collision"]
        self.margin_m = float(collision["margin_m"])
        self._ee_link = int(robot["ee_link"])
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
        self._loaded: CollisionScene | None = None
        self._bodies: list[int] = []  # obstacle bodies of the loaded scene, in its order
        self._held_body: int | None = None

    def close(self) -> None:
        p.disconnect(physicsClientId=self._client)

    def check(self, scene: CollisionScene) -> CollisionCheck:
        """The check of one joint sample against `scene` (the held object counts while carrying)."""
        return functools.partial(self.first_collision, scene)

    def first_collision(self, scene: CollisionScene, joints: np.ndarray, carrying: bool) -> Collision | None:
        """The deepest contact of a checked link (or, carrying, the held object) with an obstacle, or None."""
        return min(self.contacts(scene, joints, carrying), key=lambda hit: hit.distance_m, default=None)

    def _load(self, scene: CollisionScene) -> None:
        c = self._client
        for uid in [*self._bodies, *([self._held_body] if self._held_body is not None else [])]:
            p.removeBody(uid, physicsClientId=c)
        self._bodies = [create_box_body(c, box) for box in scene.obstacles]
        self._held_body = None
        if scene.held is not None:
            self._held_body = create_box_body(c, Box(HELD_OBJECT, scene.held.size, RigidTransform.identity()))
        self._loaded = scene

    def contacts(self, scene: CollisionScene, joints: np.ndarray, carrying: bool) -> list[Collision]:
        """Every (link or held object, obstacle) pair closer than the margin, with its deepest distance."""
        c = self._client
        with self._lock:
            if self._loaded is not scene:
                self._load(scene)
            for j, q in enumerate(np.asarray(joints, dtype=float)[:ARM_JOINTS]):
                p.resetJointState(self._robot, j, float(q), physicsClientId=c)
            bodies: list[tuple[int, dict[int, str] | None]] = [(self._robot, self._links)]
            if carrying and scene.held is not None and self._held_body is not None:
                link = self._ee_link if scene.held_in_link is None else self._link_index[scene.held_in_link]
                state = p.getLinkState(self._robot, link, computeForwardKinematics=True, physicsClientId=c)
                pose = RigidTransform.from_pose(state[4], state[5]) @ scene.held.pose
                p.resetBasePositionAndOrientation(
                    self._held_body, pose.translation.tolist(), pose.quat_xyzw.tolist(), physicsClientId=c
                )
                bodies.append((self._held_body, None))
            deepest: dict[tuple[str, str], float] = {}
            for body, links in bodies:
                for obstacle_uid, obstacle in zip(self._bodies, scene.obstacles, strict=True):
                    for point in p.getClosestPoints(body, obstacle_uid, self.margin_m, physicsClientId=c):
                        if links is not None and point[3] not in links:
                            continue
                        pair = (HELD_OBJECT if links is None else links[point[3]], obstacle.name)
                        deepest[pair] = min(float(point[8]), deepest.get(pair, np.inf))
            return [Collision(link, obstacle, distance) for (link, obstacle), distance in deepest.items()]
