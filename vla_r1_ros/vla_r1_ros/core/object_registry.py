"""The operator names each object once: what the camera judge and the self-reset recognise.

`register_objects(view, marks, expected_tray, settings)` takes one frame set of the cell as a night
starts and one click per object (`marks`: name -> pixel), and keeps, for each, what the camera saw of
it: its colour statistics and its size. The tray is measured from depth near where it is expected
(`core.tray.measure_tray`). The registry is a JSON file (`save` / `load`) that every later trial is
judged against (`vla-r1 objects register`, cli/objects.py).

A name is "<colour>_<shape>" ("red_cube", "blue_toy_duck"): the words an instruction names it by
(`resolve`, the same rule as the simulator's `core.scene.resolve_target`). `match(blob, settings)` says
which registered object a blob is, with a confidence: the posterior of the best object against every
other and against "none of them" (an object at `max_distance`), so two look-alikes or a stranger both
give a low confidence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_r1_ros.core.episodes.durable import write_json_atomic
from vla_r1_ros.core.scene import resolve_target
from vla_r1_ros.core.tabletop import (
    Blob,
    ColourStats,
    RgbdView,
    TabletopSettings,
    measure_tray_in,
    segment_tabletop,
)
from vla_r1_ros.core.tray import TrayNotFound, TrayPose

REGISTRY_VERSION = 1


class RegistryError(ValueError):
    """A registry cannot be made, read or used; the message is one line saying why."""


@dataclass(frozen=True)
class MatchSettings:
    """`vision_judge.match` of config/workspace.yaml: how a blob is recognised as a registered object."""

    colour_floor: float  # a*/b* noise of one colour (ColourStats.distance)
    size_tolerance_m: float  # a blob's height may exceed the object's largest side by this (or fall short
    # of its smallest) before it counts against the match: a tipped object stands as tall as another side
    max_distance: float  # beyond this (colour and size together) a blob is none of the registered objects

    @classmethod
    def from_config(cls, workspace_config: Mapping[str, Any]) -> MatchSettings:
        judge = workspace_config["vision_judge"]
        return cls(colour_floor=float(judge["colour_floor"]), **judge["match"])


@dataclass(frozen=True)
class RegisteredObject:
    name: str
    colour: str
    shape: str  # a key of core.scene.SHAPE_WORDS, or any word an instruction uses for it
    appearance: ColourStats
    length_m: float
    width_m: float
    height_m: float

    def distance(self, blob: Blob, settings: MatchSettings) -> float:
        """How unlike this object the blob is: colour (Mahalanobis) and height outside its sizes."""
        sides = (self.length_m, self.width_m, self.height_m)
        outside = max(blob.height_m - max(sides), min(sides) - blob.height_m, 0.0) / settings.size_tolerance_m
        return float(np.hypot(self.appearance.distance(blob.appearance, settings.colour_floor), outside))

    def to_json(self) -> dict[str, Any]:
        sizes = {"length_m": self.length_m, "width_m": self.width_m, "height_m": self.height_m}
        return {"name": self.name, "colour": self.colour, "shape": self.shape, **sizes, **self.appearance.to_json()}


def words_of(name: str) -> tuple[str, str]:
    """(colour, shape) an object's name says: "red_cube" -> ("red", "cube"), "blue_toy_duck" -> ("blue", "toy duck")."""
    colour, _, shape = name.partition("_")
    if not colour or not shape:
        raise RegistryError(f"object name {name!r} is not <colour>_<shape> (e.g. red_cube)")
    return colour, shape.replace("_", " ")


@dataclass(frozen=True)
class ObjectRegistry:
    objects: tuple[RegisteredObject, ...]
    tray: TrayPose
    table_z: float

    def save(self, path: Path) -> None:
        tray = {"centre": self.tray.centre.tolist(), "size": self.tray.size.tolist(), "yaw_rad": self.tray.yaw_rad}
        data = {"version": REGISTRY_VERSION, "table_z": self.table_z, "tray": tray}
        write_json_atomic(path, {**data, "objects": [o.to_json() for o in self.objects]})

    @classmethod
    def load(cls, path: Path) -> ObjectRegistry:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RegistryError(f"no object registry at {path} (make one with `vla-r1 objects register`)") from None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read the object registry {path}: {exc}") from None
        try:
            if data["version"] != REGISTRY_VERSION:
                raise ValueError(f"version {data['version']!r}, this code reads {REGISTRY_VERSION}")
            tray = data["tray"]
            objects = tuple(
                RegisteredObject(
                    name=str(o["name"]),
                    colour=str(o["colour"]),
                    shape=str(o["shape"]),
                    appearance=ColourStats.from_json(o),
                    length_m=float(o["length_m"]),
                    width_m=float(o["width_m"]),
                    height_m=float(o["height_m"]),
                )
                for o in data["objects"]
            )
            registry = cls(
                objects,
                TrayPose(np.asarray(tray["centre"], float), np.asarray(tray["size"], float), float(tray["yaw_rad"])),
                float(data["table_z"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"malformed object registry {path}: {type(exc).__name__}: {exc}") from None
        if not objects or len({o.name for o in objects}) != len(objects):
            raise RegistryError(f"malformed object registry {path}: no objects, or two with one name")
        return registry

    def object(self, name: str) -> RegisteredObject:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"{name!r} is not registered (have: {[o.name for o in self.objects]})")

    def resolve(self, instruction: str) -> RegisteredObject | None:
        """The object an instruction names (core.scene.resolve_target's rule), or None."""
        return resolve_target(instruction, self.objects)

    def match(self, blob: Blob, settings: MatchSettings) -> tuple[RegisteredObject | None, float]:
        """The registered object the blob is and the confidence in that (0..1); (None, confidence that it
        is none of them) when even the best is beyond `max_distance`."""
        distances = np.array([obj.distance(blob, settings) for obj in self.objects])
        likelihoods = np.exp(-0.5 * np.append(distances, settings.max_distance) ** 2)
        total = float(likelihoods.sum())
        best = int(np.argmin(distances))
        if distances[best] > settings.max_distance or total == 0.0:
            return None, float(likelihoods[-1] / total) if total else 1.0
        return self.objects[best], float(likelihoods[best] / total)


def pixel_blob(blobs: tuple[Blob, ...], uv: tuple[float, float], reach_px: int = 4) -> int | None:
    """Index of the blob under pixel (u, v) (or within `reach_px` of it: a click on an object's edge)."""
    u, v = round(uv[0]), round(uv[1])
    for i, blob in enumerate(blobs):
        h, w = blob.mask.shape
        window = blob.mask[
            max(0, v - reach_px) : min(h, v + reach_px + 1), max(0, u - reach_px) : min(w, u + reach_px + 1)
        ]
        if window.any():
            return i
    return None


def register_objects(
    view: RgbdView, marks: Mapping[str, tuple[float, float]], expected_tray: TrayPose, settings: TabletopSettings
) -> ObjectRegistry:
    """The registry of the objects clicked in `view` (name -> pixel on the object), the tray measured near
    `expected_tray`, the table at `settings`' table height. RegistryError when the tray is not found, a
    click hits no object or one another click already took, or the view shows objects nobody named."""
    table_z = float(settings.table_z)
    try:
        tray = measure_tray_in(view, expected_tray, table_z, settings.lift)
    except TrayNotFound as exc:
        raise RegistryError(f"cannot register: {exc}") from None
    scene = segment_tabletop(view, table_z, tray, settings)
    if scene.in_tray:
        raise RegistryError(f"cannot register: {len(scene.in_tray)} object(s) stand in the tray; empty it first")
    blobs = scene.on_table
    taken: dict[int, str] = {}
    objects = []
    for name, uv in marks.items():
        colour, shape = words_of(name)
        index = pixel_blob(blobs, uv)
        if index is None:
            raise RegistryError(f"the click for {name} at pixel ({uv[0]:.0f}, {uv[1]:.0f}) is on no object")
        if index in taken:
            raise RegistryError(f"the clicks for {taken[index]} and {name} are on one object")
        taken[index] = name
        blob = blobs[index]
        objects.append(
            RegisteredObject(name, colour, shape, blob.appearance, blob.length_m, blob.width_m, blob.height_m)
        )
    unnamed = [b for i, b in enumerate(blobs) if i not in taken]
    if unnamed:
        where = ", ".join(f"({b.centroid[0]:.2f}, {b.centroid[1]:.2f})" for b in unnamed)
        raise RegistryError(f"objects at {where} m (base frame) have no click: name every object, or take it away")
    return ObjectRegistry(tuple(objects), tray, table_z)
