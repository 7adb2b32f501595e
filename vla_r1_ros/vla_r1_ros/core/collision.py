"""The workcell's collision geometry, described once for both arms (plain Python, no ROS, no PyBullet).

Every obstacle is a box (`Box`: name, extent, pose of its centre in the robot base frame), built from
config/workcell.yaml (`table`, `collision`) and config/camera.yaml (the camera mount stands where the
extrinsics put the camera):

- `table`: the table top slab;
- `tray_floor`, `tray_wall_{+x,-x,+y,-y}`: the tray, from its extent and pose (measured from depth where
  no scene reports it, `core.tray.locate_tray`; the simulator's scene; else `collision.tray_when_unseen`);
- `camera_housing`, `camera_pole`: the camera body behind the optical frame and the pole it sits on;
- in the simulator, with `collision.scene_objects`, one box per other object of the scene (its extent,
  oriented), the object being picked excluded;
- `depth_clutter_<i>`: what the trial's own depth shows standing above the table (`core.clutter`),
  carried with the tray's measured pose in `SeenObstacles`;
- while carrying, the held object: a box hanging from the tool centre point (TCP), from the plan
  (`core.planning.held_object_box`).

The simulator checks these with PyBullet (`sim/collision.py`), MoveIt as collision objects in its
planning scene (`executors/moveit.py`): both see exactly the same boxes. A check returns the first
`Collision` (which robot link or the held object touched which obstacle) or None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.geometry import RigidTransform, camera_extrinsics
from vla_r1_ros.core.tray import TrayPose

if TYPE_CHECKING:
    from vla_r1_ros.core.scene import ObjectState, Scene

HELD_OBJECT = "held_object"  # the name a held object's box carries in checks and messages


@dataclass(frozen=True)
class Box:
    name: str
    size: np.ndarray  # (3,) full extent along the box's own axes (m)
    pose: RigidTransform  # the box centre (base frame; for the held object: the TCP frame)


@dataclass(frozen=True)
class Collision:
    link: str  # robot link, or HELD_OBJECT
    obstacle: str  # Box.name
    distance_m: float | None  # signed, negative = penetration depth; None where the checker gives none (MoveIt)

    def describe(self) -> str:
        if self.distance_m is None:
            return f"{self.link} collides with {self.obstacle}"
        depth = f"{-self.distance_m * 1000:.0f} mm into" if self.distance_m < 0 else "touches"
        return f"{self.link} {depth} {self.obstacle}"


# (arm joints, carrying the object?) -> the first collision, or None.
CollisionCheck = Callable[[np.ndarray, bool], Collision | None]


@dataclass(frozen=True)
class SeenObstacles:
    """What a trial's own frame set tells the collision check: the tray as measured from depth (None: the
    scene's, or the config's) and the depth clutter boxes (`core.clutter.depth_clutter`)."""

    tray: TrayPose | None = None
    clutter: tuple[Box, ...] = ()


NOTHING_SEEN = SeenObstacles()


def world_T_base(workcell_config: dict[str, Any]) -> RigidTransform:
    """The robot base (panda_link0) in the simulator's world frame."""
    robot = workcell_config["robot"]
    return RigidTransform(
        Rotation.from_euler("z", float(robot["base_yaw_rad"])), np.asarray(robot["base_position_world"], float)
    )


def table_box(workcell_config: dict[str, Any]) -> Box:
    """The table top: `table.size_m`, its top face at `table.top_z_world`, centred on the table."""
    table = workcell_config["table"]
    size = np.asarray(table["size_m"], dtype=float)
    centre_world = np.array([*table["position_world"][:2], float(table["top_z_world"]) - size[2] / 2])
    base_T_world = world_T_base(workcell_config).inverse()
    return Box("table", size, RigidTransform(base_T_world.rotation, base_T_world.apply(centre_world)))


def tray_boxes(centre: Any, quat_xyzw: Any, size: Any, wall_m: float) -> list[Box]:
    """An open box of extent `size` (its centre and orientation given): a floor and four walls."""
    frame = RigidTransform.from_pose(centre, quat_xyzw)
    sx, sy, sz = (float(v) for v in size)
    parts = [
        ("tray_floor", [sx, sy, wall_m], [0.0, 0.0, (wall_m - sz) / 2]),
        ("tray_wall_+x", [wall_m, sy, sz], [(sx - wall_m) / 2, 0.0, 0.0]),
        ("tray_wall_-x", [wall_m, sy, sz], [(wall_m - sx) / 2, 0.0, 0.0]),
        ("tray_wall_+y", [sx, wall_m, sz], [0.0, (sy - wall_m) / 2, 0.0]),
        ("tray_wall_-y", [sx, wall_m, sz], [0.0, (wall_m - sy) / 2, 0.0]),
    ]
    return [
        Box(name, np.array(extent), frame @ RigidTransform(Rotation.identity(), np.array(offset)))
        for name, extent, offset in parts
    ]


def camera_mount_boxes(camera_config: dict[str, Any], mount: dict[str, Any]) -> list[Box]:
    """The camera housing (its front face at the optical frame, axes along the optical frame's) and a
    vertical pole behind it, from `mount.pole_bottom_z_m` up to the camera's height."""
    base_T_camera = camera_extrinsics(camera_config)
    housing_size = np.asarray(mount["housing_size_m"], dtype=float)
    housing = Box(
        "camera_housing",
        housing_size,
        base_T_camera @ RigidTransform(Rotation.identity(), np.array([0.0, 0.0, -housing_size[2] / 2])),
    )
    # Behind the camera, horizontally: away from where it looks.
    back = -base_T_camera.rotation.apply([0.0, 0.0, 1.0])[:2]
    back = back / np.linalg.norm(back) if np.linalg.norm(back) > 1e-6 else np.array([1.0, 0.0])
    pole_xy = np.asarray(mount["pole_size_m"], dtype=float)
    offset = housing_size[2] + float(mount["pole_gap_m"]) + float(np.max(pole_xy)) / 2
    bottom, top = float(mount["pole_bottom_z_m"]), float(base_T_camera.translation[2])
    centre = np.array([*(base_T_camera.translation[:2] + offset * back), (bottom + top) / 2])
    yaw = float(np.arctan2(back[1], back[0]))
    pole = Box("camera_pole", np.array([*pole_xy, top - bottom]), RigidTransform(Rotation.from_euler("z", yaw), centre))
    return [housing, pole]


def object_box(state: ObjectState) -> Box:
    return Box(
        state.name, np.asarray(state.size, dtype=float), RigidTransform.from_pose(state.position, state.quat_xyzw)
    )


def picked_object(objects: Sequence[ObjectState], grasp_point: Any) -> str | None:
    """The object whose footprint holds the grasp point (the one the plan picks), or None."""
    point = np.asarray(grasp_point, dtype=float)
    for state in objects:
        local = RigidTransform.from_pose(state.position, state.quat_xyzw).inverse().apply(point)
        if np.all(np.abs(local[:2]) <= np.asarray(state.size[:2]) / 2):
            return state.name
    return None


def static_obstacles(workcell_config: dict[str, Any], camera_config: dict[str, Any]) -> list[Box]:
    """What never moves: the table and the camera mount."""
    return [
        table_box(workcell_config),
        *camera_mount_boxes(camera_config, workcell_config["collision"]["camera_mount"]),
    ]


def tray_pose_boxes(tray: TrayPose, wall_m: float) -> list[Box]:
    """`tray_boxes` of a `core.tray.TrayPose` (measured, or `collision.tray_when_unseen`)."""
    return tray_boxes(tray.centre, Rotation.from_euler("z", float(tray.yaw_rad)).as_quat(), tray.size, wall_m)


def workcell_obstacles(
    workcell_config: dict[str, Any],
    camera_config: dict[str, Any],
    scene: Scene | None = None,
    grasp_point: Any = None,
    seen: SeenObstacles = NOTHING_SEEN,
) -> list[Box]:
    """Every obstacle of the workcell: table, camera mount, tray, (with a scene and `collision.scene_objects`)
    its objects except the one under `grasp_point`, and what `seen` adds. The tray is `seen.tray` when
    measured, else the scene's, else `collision.tray_when_unseen`."""
    collision = workcell_config["collision"]
    wall = float(collision["tray_wall_m"])
    if seen.tray is not None:
        tray = tray_pose_boxes(seen.tray, wall)
    elif scene is not None:
        tray = tray_boxes(scene.tray.position, scene.tray.quat_xyzw, scene.tray.size, wall)
    else:
        tray = tray_pose_boxes(TrayPose.configured(workcell_config), wall)
    others: list[Box] = []
    if scene is not None and collision["scene_objects"]:
        picked = None if grasp_point is None else picked_object(scene.objects, grasp_point)
        others = [object_box(o) for o in scene.objects if o.name != picked]
    return [*static_obstacles(workcell_config, camera_config), *tray, *others, *seen.clutter]


@dataclass(frozen=True)
class CollisionWorld:
    """What an arm without a scene model (MoveIt on a real workcell) is checked against."""

    frame: str  # the base frame the boxes are in (MoveIt's planning frame)
    obstacles: tuple[Box, ...]
    robot_links: tuple[str, ...]  # the links that are checked
    tray_wall_m: float  # a measured tray's boxes are built with this
    arm_links: tuple[str, ...]  # the arm's chain, base to hand, that depth clutter leaves out

    @classmethod
    def from_config(cls, workcell_config: dict[str, Any], camera_config: dict[str, Any]) -> CollisionWorld:
        collision = workcell_config["collision"]
        return cls(
            str(camera_config["frames"]["base"]),
            tuple(workcell_obstacles(workcell_config, camera_config)),
            tuple(collision["robot_links"]),
            float(collision["tray_wall_m"]),
            tuple(collision["depth_clutter"]["arm_links"]),
        )
