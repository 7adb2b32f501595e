"""Scene ground truth (simulator), instruction templates, and the reference answers derived from it.

A real robot has no ground truth; the simulated workcell fills these dataclasses from PyBullet, the
perception node publishes them as `SceneState`, and the scripted policy, the reward logger and the
trial runner read them back. Everything here is plain Python.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform

# Words an instruction may use for each shape the workcell spawns.
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "cube": ("cube", "block"),
    "cylinder": ("cylinder", "can"),
    "sphere": ("ball", "sphere"),
    "cuboid": ("box", "brick"),
    "mug": ("mug", "cup"),
    "duck": ("duck", "toy duck"),
}

INSTRUCTION_TEMPLATES: tuple[str, ...] = (
    "put the {colour} {shape} in the tray",
    "pick up the {colour} {shape} and place it in the tray",
    "move the {colour} {shape} into the tray",
    "place the {colour} {shape} in the tray",
)

# Number of waypoints in a reference trajectory (the paper's examples have 4).
REFERENCE_WAYPOINTS = 4


@dataclass(frozen=True)
class ObjectState:
    name: str  # unique in the scene, e.g. "red_cube"
    colour: str
    shape: str  # a key of SHAPE_WORDS, or "tray"
    position: tuple[float, float, float]  # centre of the object's extent, robot base frame (m)
    quat_xyzw: tuple[float, float, float, float]
    size: tuple[float, float, float]  # axis-aligned extent (m)
    bbox_px: tuple[float, float, float, float] | None = None  # visible pixels: x1, y1, x2, y2
    visible: bool = True

    @property
    def top_center(self) -> np.ndarray:
        return np.array(self.position) + np.array([0.0, 0.0, self.size[2] / 2.0])


@dataclass(frozen=True)
class Scene:
    seed: int
    objects: tuple[ObjectState, ...]
    tray: ObjectState
    ee_position: tuple[float, float, float]

    def object(self, name: str) -> ObjectState:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"no object named {name!r} in the scene (have: {[o.name for o in self.objects]})")


def make_instruction(obj: ObjectState, rng: np.random.Generator) -> str:
    template = INSTRUCTION_TEMPLATES[rng.integers(len(INSTRUCTION_TEMPLATES))]
    words = SHAPE_WORDS.get(obj.shape, (obj.shape,))
    return template.format(colour=obj.colour, shape=words[rng.integers(len(words))])


class Nameable(Protocol):
    """What an instruction can name an object by: the simulator's ObjectState, an operator's
    core.object_registry.RegisteredObject."""

    @property
    def colour(self) -> str: ...

    @property
    def shape(self) -> str: ...


NamedObject = TypeVar("NamedObject", bound=Nameable)


def resolve_target(instruction: str, objects: Sequence[NamedObject]) -> NamedObject | None:
    """The object an instruction names: colour and shape word both present, else a unique colour match."""
    text = " " + re.sub(r"[^a-z ]", " ", instruction.lower()) + " "

    def says(word: str) -> bool:
        return f" {word} " in text

    colour_matches = [o for o in objects if says(o.colour)]
    full = [o for o in colour_matches if any(says(w) for w in SHAPE_WORDS.get(o.shape, (o.shape,)))]
    if len(full) == 1:
        return full[0]
    if not full and len(colour_matches) == 1:
        return colour_matches[0]
    return None


def project_to_normalized(
    points_base: np.ndarray, intrinsics: CameraIntrinsics, base_T_camera: RigidTransform
) -> np.ndarray:
    """Base-frame points (N, 3) -> normalized image coordinates (N, 2), the model's waypoint form."""
    camera_points = base_T_camera.inverse().apply(np.asarray(points_base, dtype=float).reshape(-1, 3))
    pixels = intrinsics.project(camera_points)
    return pixels / np.array([intrinsics.width, intrinsics.height])


def sim_marks(
    scene: Scene, intrinsics: CameraIntrinsics, base_T_camera: RigidTransform
) -> dict[str, tuple[float, float]]:
    """Where an operator would click each visible object to register it (core.object_registry), from the
    simulator's ground truth: the pixel of its top centre."""
    visible = [o for o in scene.objects if o.visible]
    if not visible:
        return {}
    pixels = intrinsics.project(base_T_camera.inverse().apply(np.array([o.top_center for o in visible])))
    return {o.name: (float(u), float(v)) for o, (u, v) in zip(visible, pixels, strict=True)}


def reference_box(target: ObjectState, intrinsics: CameraIntrinsics) -> tuple[float, float, float, float]:
    """The target's segmentation box as the model's normalized centre box (cx, cy, w, h)."""
    if target.bbox_px is None:
        raise ValueError(f"{target.name} is not visible: it has no segmentation box")
    x1, y1, x2, y2 = target.bbox_px
    w, h = float(intrinsics.width), float(intrinsics.height)
    return ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)


def reference_path_base(scene: Scene, target: ObjectState, n: int = REFERENCE_WAYPOINTS) -> np.ndarray:
    """The ideal surface path (N, 3) in the base frame: from the target's top centre to the tray's floor
    centre, evenly spaced. Its last point is where the object is placed."""
    start = target.top_center
    tray_floor = np.array(scene.tray.position) - np.array([0.0, 0.0, scene.tray.size[2] / 2.0 - 0.01])
    return np.linspace(start, tray_floor, n)


def reference_waypoints(
    scene: Scene,
    target: ObjectState,
    intrinsics: CameraIntrinsics,
    base_T_camera: RigidTransform,
    n: int = REFERENCE_WAYPOINTS,
) -> np.ndarray:
    """The ideal trajectory answer: `reference_path_base` projected into the image, normalized (N, 2)."""
    return project_to_normalized(reference_path_base(scene, target, n), intrinsics, base_T_camera)
