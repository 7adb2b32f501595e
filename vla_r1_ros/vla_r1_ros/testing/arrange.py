"""Arranging the simulated world for the camera judge's tests and measurements: objects teleported into
the tray, onto the table or off it, as a trial could leave them (test support: the judge itself sees only
the frames captured afterwards, core/vision_judge.py).

`arrange_outcome(workcell, rng, kind)` makes one trial's end state on the workcell's current layout and
says what it did; `view_of(frame, camera_config)` is the frame set as the judge takes it. For the
collision tests: `move_tray` (the tray somewhere else than the layout put it) and `depth_only_box` (a body
the camera sees but the simulator's scene does not list, as a real cell's clutter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p
from scipy.spatial.transform import Rotation

from vla_r1_ros.cameras.base import RgbdFrame
from vla_r1_ros.core.collision import Box
from vla_r1_ros.core.geometry import RigidTransform, camera_extrinsics
from vla_r1_ros.core.scene import ObjectState, Scene, make_instruction
from vla_r1_ros.core.tabletop import RgbdView
from vla_r1_ros.sim.collision import create_box_body
from vla_r1_ros.sim.rendering import on_gl_thread
from vla_r1_ros.sim.workcell import Workcell

SETTLE_S = 0.5
DEPTH_ONLY_RGBA = (0.45, 0.35, 0.25, 1.0)  # a cardboard box
TRAY_SPACING_M = 0.09  # between two objects in the tray: an open finger fits between them (the reset picks them)
OFF_THE_TABLE_WORLD = np.array([0.0, 3.0, 0.5])  # on the floor, far outside the camera's view
# The outcomes a trial can leave: (what ends in the tray, where the named object ends).
# "tossed": released tumbling above the tray, it lands wherever physics puts it (in the tray, tipped, on its
# rim or bounced out); "beside": on the table a few centimetres from the tray's outer wall.
OUTCOMES = ("success", "wrong_object", "two_in_tray", "dropped", "fallen", "left", "held", "tossed", "beside")


def view_of(frame: RgbdFrame, camera_config: dict) -> RgbdView:
    return RgbdView(
        frame.color,
        frame.depth_mm.astype(float) / 1000.0,
        frame.intrinsics,
        camera_extrinsics(camera_config),
        frame.stamp_ns,
    )


def move_object(
    workcell: Workcell, name: str, xy: np.ndarray, yaw: float, bottom_z: float = 0.0, tilt: Rotation | None = None
) -> None:
    """Teleport an object, upright (or turned by `tilt`), its bottom 2 mm above `bottom_z` (base frame),
    and let it settle."""
    body = workcell._body(name)
    rot = Rotation.from_euler("z", yaw) * (tilt or Rotation.identity())
    centre = np.array([xy[0], xy[1], bottom_z + body.size[2] / 2 + 0.002])
    world = workcell.world_T_base @ RigidTransform(rot, centre - rot.apply(body.centre_offset))
    with workcell.lock:
        p.resetBasePositionAndOrientation(
            body.uid, world.translation.tolist(), world.quat_xyzw.tolist(), physicsClientId=workcell._client
        )
        p.resetBaseVelocity(body.uid, [0, 0, 0], [0, 0, 0], physicsClientId=workcell._client)
    workcell.step(SETTLE_S)


def move_tray(workcell: Workcell, xy: np.ndarray, yaw: float = 0.0) -> None:
    """Put the tray upright at `xy` (base frame), turned by `yaw`, and let it settle."""
    with workcell.lock:
        workcell.layout._place(workcell.layout.tray, float(xy[0]), float(xy[1]), yaw)
    workcell.step(SETTLE_S)


def depth_only_box(workcell: Workcell, centre: np.ndarray, size: np.ndarray) -> int:
    """A static box standing at `centre` (base frame) that is in no Scene: the camera renders it, the
    simulator's object list does not have it. Returns its body id (`remove_body` takes it away)."""
    box = Box("depth_only", np.asarray(size, float), RigidTransform(Rotation.identity(), np.asarray(centre, float)))

    def create() -> int:  # on the renderer's thread: the EGL plugin draws only what is made there
        with workcell.lock:
            return create_box_body(workcell._client, box, workcell.world_T_base, DEPTH_ONLY_RGBA)

    return on_gl_thread(create)


def remove_body(workcell: Workcell, uid: int) -> None:
    """Take a `depth_only_box` away again (on the renderer's thread, where it was made)."""

    def remove() -> None:
        with workcell.lock:
            p.removeBody(uid, physicsClientId=workcell._client)

    on_gl_thread(remove)


def drop_off_the_table(workcell: Workcell, name: str) -> None:
    body = workcell._body(name)
    with workcell.lock:
        p.resetBasePositionAndOrientation(
            body.uid, OFF_THE_TABLE_WORLD.tolist(), [0, 0, 0, 1], physicsClientId=workcell._client
        )


def _footprint_radius(obj: ObjectState) -> float:
    return float(np.hypot(obj.size[0], obj.size[1]) / 2)


def tray_spots(scene: Scene, objects: list[ObjectState], rng: np.random.Generator) -> list[np.ndarray]:
    """A spot on the tray's floor for each of `objects`, TRAY_SPACING_M apart."""
    centre = np.array(scene.tray.position[:2])
    for _ in range(500):
        spots = []
        for obj in objects:
            floor_half = np.array(scene.tray.size[:2]) / 2 - 0.04 - _footprint_radius(obj) * 0.8
            spots.append(centre + rng.uniform(-floor_half, floor_half))
        if all(np.linalg.norm(a - b) > TRAY_SPACING_M for i, a in enumerate(spots) for b in spots[i + 1 :]):
            return spots
    raise RuntimeError(f"no room in the tray for {[o.name for o in objects]}")


def table_spot(scene: Scene, obj: ObjectState, rng: np.random.Generator) -> np.ndarray:
    """A free spot on the table in view (not in or at the tray, clear of every other object, away from
    where `obj` stands)."""
    tray_xy, tray_half = np.array(scene.tray.position[:2]), np.array(scene.tray.size[:2]) / 2
    radius = _footprint_radius(obj)
    for _ in range(500):
        xy = rng.uniform([0.32, -0.28], [0.66, 0.28])
        gap_to_tray = np.linalg.norm(np.maximum(np.abs(xy - tray_xy) - tray_half, 0.0))
        others = [o for o in scene.objects if o.name != obj.name]
        clear = all(
            np.linalg.norm(xy - np.array(o.position[:2])) > radius + _footprint_radius(o) + 0.02 for o in others
        )
        if gap_to_tray > radius + 0.03 and clear and np.linalg.norm(xy - np.array(obj.position[:2])) > 0.08:
            return xy
    raise RuntimeError(f"no free table spot for {obj.name}")


@dataclass(frozen=True)
class Arranged:
    kind: str  # one of OUTCOMES
    instruction: str
    target: str
    gripper_width_m: float  # what the fingers report after the trial (held: closed on the object)


def arrange_outcome(workcell: Workcell, rng: np.random.Generator, kind: str, held_width_m: float = 0.05) -> Arranged:
    """Leave the current layout as a trial ending in `kind` would. `held`: the named object ends in the
    tray's airspace but the gripper still reports it closed on something (`held_width_m` apart)."""
    scene = workcell.scene()
    objects = list(scene.objects)
    target = objects[int(rng.integers(len(objects)))]
    others = [o for o in objects if o.name != target.name]
    other = others[int(rng.integers(len(others)))]
    yaw = float(rng.uniform(-0.6, 0.6))
    floor_z = float(scene.tray.position[2] - scene.tray.size[2] / 2) + 0.008
    into_tray = [target] if kind in ("success", "held") else [other] if kind == "wrong_object" else []
    into_tray = [target, other] if kind == "two_in_tray" else into_tray
    for obj, spot in zip(into_tray, tray_spots(scene, into_tray, rng) if into_tray else [], strict=True):
        move_object(workcell, obj.name, spot, yaw, floor_z)
    width = 0.0
    if kind == "dropped":
        move_object(workcell, target.name, table_spot(scene, target, rng), yaw)
    if kind == "tossed":
        spot = np.array(scene.tray.position[:2]) + rng.uniform(-0.06, 0.06, 2)
        move_object(workcell, target.name, spot, yaw, floor_z + 0.06, Rotation.random(random_state=rng))
        workcell.step(SETTLE_S)  # a tumbling object takes longer to come to rest
    if kind == "beside":
        side = rng.choice([-1.0, 1.0]) * np.array([1.0, 0.0] if rng.random() < 0.5 else [0.0, 1.0])
        reach = np.array(scene.tray.size[:2]) / 2 + _footprint_radius(target) + rng.uniform(0.01, 0.04)
        along = rng.uniform(-0.08, 0.08) * side[::-1]
        move_object(workcell, target.name, np.array(scene.tray.position[:2]) + side * reach + along, yaw)
    if kind == "fallen":
        drop_off_the_table(workcell, target.name)
    if kind == "held":
        width = held_width_m
    return Arranged(kind, make_instruction(target, rng), target.name, width)


def sim_in_tray(workcell: Workcell, arranged: Arranged) -> tuple[str, ...]:
    """What the simulator counts as resting in the tray: a held object does not rest there."""
    return tuple(n for n in workcell.objects_in_tray() if not (arranged.kind == "held" and n == arranged.target))
