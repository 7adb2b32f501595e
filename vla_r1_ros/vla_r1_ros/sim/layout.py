"""The workcell's layout: the table, the tray and a seeded layout of graspable objects in one PyBullet
client, described in the robot base frame (the PyBullet world frame stays in here).

Every body is made once, when the world is built (`build`), and a layout only moves, recolours and
weighs them: PyBullet's EGL renderer never frees the meshes and textures of a body it drew (not even
on `resetSimulation`), so rebuilding the scene for every layout grew the process by ~20 MB a reset.
One body per shape (per possible copy of it) waits out of the camera's view, weightless, until a
layout uses it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybullet as p
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.collision import camera_mount_boxes
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.scene import ObjectState
from vla_r1_ros.sim.collision import create_box_body
from vla_r1_ros.sim.rendering import PixelBox
from vla_r1_ros.sim.textures import renderable_urdf, white_texture_path

_SPAWN_HEIGHT = 5.0  # bodies are made out of the way, measured there, then placed
# Unused bodies wait here, 1 m apart, behind the camera (which looks from +x towards the arm), world frame.
_PARKING_WORLD = np.array([20.0, 0.0, 1.0])


@dataclass
class Body:
    """One object (or the tray) and what the layout knows about it."""

    uid: int
    name: str
    colour: str
    shape: str
    size: np.ndarray  # extent in the body's own frame (m)
    centre_offset: np.ndarray  # centre of that extent in the body (centre-of-mass) frame


class Layout:
    """Spawns and measures the workcell's bodies in `client`; every pose it takes or gives is in the
    base frame (`world_T_base` maps it into PyBullet's world)."""

    def __init__(self, client: int, config: dict[str, Any], world_T_base: RigidTransform) -> None:
        self.client = client
        self.config = config
        self.world_T_base = world_T_base
        self.base_T_world = world_T_base.inverse()
        self.tray: Body | None = None
        self._pool: dict[str, list[Body]] = {}  # shape -> its bodies, in the order layouts use them

    def build(self, camera_config: dict[str, Any]) -> None:
        """Make every body a layout can use, once: table, camera mount, tray, and the object pool (each
        shape as many times as one layout can draw it), all parked."""
        self._load_table()
        self._build_camera_mount(camera_config)
        self.tray = self._load_tray()
        cfg = self.config["objects"]
        shapes = list(cfg["shapes"])
        # Shapes repeat only when a layout has more objects than there are shapes.
        copies = 1 if int(cfg["max_count"]) <= len(shapes) else int(cfg["max_count"])
        texture = p.loadTexture(white_texture_path(), physicsClientId=self.client)
        self._pool = {shape: [self._make_object(shape, texture) for _ in range(copies)] for shape in shapes}
        self.park_all()

    def park_all(self) -> None:
        """Every object to its parking place, weightless (so it stays there) and at rest."""
        bodies = [body for copies in self._pool.values() for body in copies]
        for index, body in enumerate(bodies):
            p.changeDynamics(body.uid, -1, mass=0.0, physicsClientId=self.client)
            position = _PARKING_WORLD + np.array([0.0, float(index), 0.0])
            p.resetBasePositionAndOrientation(body.uid, position.tolist(), [0, 0, 0, 1], physicsClientId=self.client)
            p.resetBaseVelocity(body.uid, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)

    def _load_table(self) -> None:
        table = self.config["table"]
        p.loadURDF(
            renderable_urdf(table["urdf"]), table["position_world"], useFixedBase=True, physicsClientId=self.client
        )

    def _build_camera_mount(self, camera_config: dict[str, Any]) -> None:
        """The camera's housing and pole, where config/camera.yaml puts the camera: the very boxes the
        collision checks use (core/collision.py)."""
        mount = self.config["collision"]["camera_mount"]
        for box in camera_mount_boxes(camera_config, mount):
            create_box_body(self.client, box, self.world_T_base, mount["rgba"])

    def _load_tray(self) -> Body:
        cfg, c = self.config["tray"], self.client
        uid = p.loadURDF(
            renderable_urdf(cfg["urdf"]),
            [0, 0, _SPAWN_HEIGHT],
            useFixedBase=True,
            globalScaling=float(cfg["scale"]),
            physicsClientId=c,
        )
        size, offset = self._local_extent(uid)
        return Body(uid, "tray", str(cfg["colour"]), "tray", size, offset)

    def place_tray(self, rng: np.random.Generator) -> Body:
        """The tray where `rng` puts it: centre x in its range, on a random side."""
        assert self.tray is not None, "build() first"
        cfg = self.config["tray"]
        side = 1.0 if rng.random() < 0.5 else -1.0
        x = rng.uniform(*cfg["x_range"])
        y = side * rng.uniform(*cfg["abs_y_range"])
        self._place(self.tray, x, y, 0.0)
        return self.tray

    def _make_object(self, shape: str, texture: int) -> Body:
        """One body of `shape` at the spawn height, measured; its colour comes with each layout."""
        uid = self._make_shape(shape, texture)
        size, offset = self._local_extent(uid)
        return Body(uid, shape, "", shape, size, offset)

    def _make_shape(self, shape: str, texture: int) -> int:
        spec, c = self.config["objects"]["shapes"][shape], self.client
        if "urdf" in spec:
            uid = p.loadURDF(
                renderable_urdf(spec["urdf"]),
                [0, 0, _SPAWN_HEIGHT],
                globalScaling=float(spec["scale"]),
                physicsClientId=c,
            )
            # A white texture replaces the mesh's own, so the colour is the palette colour and nothing else.
            p.changeVisualShape(uid, -1, textureUniqueId=texture, physicsClientId=c)
            return uid
        kind = spec["primitive"]
        if kind == "box":
            half = [s / 2 for s in spec["size"]]
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
        elif kind == "cylinder":
            r, h = float(spec["radius"]), float(spec["height"])
            col = p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=h, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=r, length=h, physicsClientId=c)
        elif kind == "sphere":
            r = float(spec["radius"])
            col = p.createCollisionShape(p.GEOM_SPHERE, radius=r, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_SPHERE, radius=r, physicsClientId=c)
        else:
            raise ValueError(f"unknown primitive {kind!r} for shape {shape!r}")
        mass = float(self.config["objects"]["mass_kg"])
        return p.createMultiBody(mass, col, vis, [0, 0, _SPAWN_HEIGHT], physicsClientId=c)

    def place_objects(
        self, rng: np.random.Generator, count: int, palette: dict[str, list[float]], tray: Body
    ) -> list[Body]:
        """`count` objects from the pool, coloured, weighed and placed where `rng` lays them out (the
        others stay parked)."""
        cfg, c = self.config["objects"], self.client
        shapes = list(cfg["shapes"])
        colours = [str(x) for x in rng.permutation(list(palette))[:count]]
        # Distinct shapes while there are enough of them, so every object differs in colour and shape.
        drawn = rng.permutation(shapes)[:count] if count <= len(shapes) else rng.choice(shapes, count)
        bodies = []
        for colour, shape in zip(colours, (str(s) for s in drawn), strict=True):
            copy = sum(body.shape == shape for body in bodies)
            body = dataclasses.replace(self._pool[shape][copy], name=f"{colour}_{shape}", colour=colour)
            size = body.size
            mass = float(cfg["mass_kg"])
            # Mesh URDFs carry placeholder inertias (1 kg·m²); use a solid box of the object's extent.
            inertia = [mass / 12 * (size[1] ** 2 + size[2] ** 2), mass / 12 * (size[0] ** 2 + size[2] ** 2)]
            inertia.append(mass / 12 * (size[0] ** 2 + size[1] ** 2))
            p.changeVisualShape(body.uid, -1, rgbaColor=list(palette[colour]), physicsClientId=c)
            p.changeDynamics(
                body.uid,
                -1,
                mass=mass,
                localInertiaDiagonal=inertia,
                lateralFriction=float(cfg["lateral_friction"]),
                spinningFriction=float(cfg["spinning_friction"]),
                rollingFriction=float(cfg["rolling_friction"]),
                physicsClientId=c,
            )
            bodies.append(body)
        for body, (x, y, yaw) in zip(bodies, self._sample_layout(rng, bodies, tray), strict=True):
            self._place(body, x, y, yaw)
        return bodies

    def place_at(self, bodies: list[Body], poses: Mapping[str, Sequence[float]]) -> None:
        """Put each body upright at its (x, y, yaw) of `poses` (base frame; a logged layout, as the camera
        verified it). ValueError unless `poses` names exactly these bodies."""
        names = {body.name for body in bodies}
        if set(poses) != names:
            raise ValueError(
                f"the layout names {sorted(poses)}, the seed's objects are {sorted(names)}: "
                "a layout re-runs only on the seed (and object count) it was made with"
            )
        for body in bodies:
            x, y, yaw = (float(v) for v in poses[body.name])
            self._place(body, x, y, yaw)

    def _sample_layout(
        self, rng: np.random.Generator, bodies: list[Body], tray: Body
    ) -> list[tuple[float, float, float]]:
        """Rejection-sample (x, y, yaw) in the base frame: footprints (bounding circles) keep a clear gap
        from each other and from the tray, so an open gripper fits around any object."""
        cfg = self.config["objects"]
        clearance = float(cfg["clearance_m"])
        tray_xy = self.pose_base(tray)[0][:2]
        tray_half = tray.size[:2] / 2

        def fits(x: float, y: float, radius: float, placed: list[tuple[float, float, float, float]]) -> bool:
            gap_to_tray = np.linalg.norm(np.maximum(np.abs(np.array([x, y]) - tray_xy) - tray_half, 0.0))
            return gap_to_tray >= radius + clearance and all(
                math.hypot(x - px, y - py) >= radius + pr + clearance for px, py, _, pr in placed
            )

        # Objects one at a time, each with its own tries; the whole layout restarts if one cannot fit.
        for _ in range(int(cfg["max_layout_attempts"])):
            placed: list[tuple[float, float, float, float]] = []
            for body in bodies:
                radius = float(np.hypot(body.size[0], body.size[1]) / 2)
                for _ in range(100):
                    x, y = rng.uniform(*cfg["spawn_x_range"]), rng.uniform(*cfg["spawn_y_range"])
                    yaw = rng.uniform(*cfg["yaw_range_rad"])
                    if fits(x, y, radius, placed):
                        placed.append((x, y, yaw, radius))
                        break
                else:
                    break
            if len(placed) == len(bodies):
                return [(x, y, yaw) for x, y, yaw, _ in placed]
        raise RuntimeError(f"no collision-free layout of {len(bodies)} objects in the spawn region")

    def _local_extent(self, uid: int) -> tuple[np.ndarray, np.ndarray]:
        """Extent of a body in its own frame, and that extent's centre relative to the body pose
        (PyBullet's base pose is the centre of mass, which differs from the shape centre for meshes)."""
        c = self.client
        p.resetBasePositionAndOrientation(uid, [0, 0, _SPAWN_HEIGHT], [0, 0, 0, 1], physicsClientId=c)
        lo, hi = (np.array(v) for v in p.getAABB(uid, physicsClientId=c))
        return hi - lo, (hi + lo) / 2 - np.array([0, 0, _SPAWN_HEIGHT])

    def _place(self, body: Body, x: float, y: float, yaw: float) -> None:
        """Put a body upright with its extent's bottom 1 mm above the table (base frame z = 0)."""
        rot = Rotation.from_euler("z", yaw)
        centre = np.array([x, y, body.size[2] / 2 + 0.001])
        origin = centre - rot.apply(body.centre_offset)
        world = self.world_T_base @ RigidTransform(rot, origin)
        p.resetBasePositionAndOrientation(
            body.uid, world.translation.tolist(), world.quat_xyzw.tolist(), physicsClientId=self.client
        )

    def pose_base(self, body: Body) -> tuple[np.ndarray, np.ndarray]:
        """Centre of the body's extent and its orientation, base frame."""
        pos, quat = p.getBasePositionAndOrientation(body.uid, physicsClientId=self.client)
        base_T_body = self.base_T_world @ RigidTransform.from_pose(pos, quat)
        return base_T_body.apply(body.centre_offset), base_T_body.quat_xyzw

    def object_state(self, body: Body, box: PixelBox | None, visible: bool) -> ObjectState:
        position, quat = self.pose_base(body)
        return ObjectState(
            name=body.name,
            colour=body.colour,
            shape=body.shape,
            position=tuple(float(v) for v in position),
            quat_xyzw=tuple(float(v) for v in quat),
            size=tuple(float(v) for v in body.size),
            bbox_px=box,
            visible=visible,
        )

    def aim_gui_camera(self) -> None:
        g = self.config["render"]["gui_camera"]
        target = self.world_T_base.apply(np.asarray(g["target_base"], float))
        p.resetDebugVisualizerCamera(
            float(g["distance"]),
            float(g["yaw_deg"]),
            float(g["pitch_deg"]),
            target.tolist(),
            physicsClientId=self.client,
        )
