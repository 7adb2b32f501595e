"""Obstacles the depth camera sees: what stands above the table that no configured box describes.

`depth_clutter(points, tray, picked, arm_chain, settings)` takes a trial's own frame set lifted to the
robot base frame (`core.tabletop.RgbdView.base_points`: depth aligned to colour, CameraInfo intrinsics,
the configured extrinsics) and returns one `core.collision.Box` per occupied column of the workcell,
named `depth_clutter_<i>`, which both arms check exactly like the configured boxes. Left out, as
MoveIt's octomap updater leaves out what it already models:
- depth holes: NaN, 0 and depth outside the camera's range (`core.lifting.depth_in_metres`);
- the table: points less than `min_height_m` above it;
- the tray: its walls (its footprint's rim band, `tray_wall_band_m` wide, and `tray_margin_m` around
  it) and its floor (points less than `min_height_m` above the floor); what stands on its floor is kept;
- the robot: points within `arm_radius_m` of the chain of its link origins as the arm stands now
  (`arm_chain`: the base, each link of `arm_links`, the TCP);
- the object being picked: points over its lifted footprint (`core.lifting.GraspSurface`: the
  affordance box's object, along its axis) grown by `picked_margin_m` on every side.
The rest is binned into `voxel_m` cells of the table plane; a cell with at least `min_points` points is
a column from the surface under it (the table, or the tray's floor) up to its highest point — what
hides below a seen top is unknown, so it counts as occupied — over the points' own extent in the cell.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.collision import Box
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.lifting import GraspSurface
from vla_r1_ros.core.tray import TrayPose

CLUTTER_PREFIX = "depth_clutter_"
MIN_EXTENT_M = 0.002  # a column's side at least this (its points may lie on one line)


@dataclass(frozen=True)
class ClutterSettings:
    """`collision.depth_clutter` of config/workcell.yaml, with the table height (workspace `safety.table_z`)."""

    enabled: bool
    table_z: float
    pixel_stride: int  # every this-th row and column of the depth image is lifted
    voxel_m: float
    min_height_m: float
    min_points: int
    picked_margin_m: float
    arm_radius_m: float
    arm_links: tuple[str, ...]
    tray_wall_band_m: float
    tray_margin_m: float
    tray_floor_m: float  # the floor's thickness (collision.tray_wall_m)

    @classmethod
    def from_config(cls, workcell_config: dict[str, Any], workspace_config: dict[str, Any]) -> ClutterSettings:
        collision = workcell_config["collision"]
        values = dict(collision["depth_clutter"])
        values["arm_links"] = tuple(values["arm_links"])
        return cls(
            table_z=float(workspace_config["safety"]["table_z"]), tray_floor_m=float(collision["tray_wall_m"]), **values
        )


def _tray_local(xy: np.ndarray, tray: TrayPose) -> np.ndarray:
    c, s = np.cos(tray.yaw_rad), np.sin(tray.yaw_rad)
    return np.abs((xy - tray.centre[:2]) @ np.array([[c, -s], [s, c]]))


def _near_chain(points: np.ndarray, chain: np.ndarray, radius: float) -> np.ndarray:
    """Whether each point lies within `radius` of the polyline through `chain` (K, 3)."""
    near = np.zeros(len(points), bool)
    for a, b in itertools.pairwise(chain):
        ab = b - a
        t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        near |= np.linalg.norm(points - (a + t[:, None] * ab), axis=1) <= radius
    return near


def _over_picked(xy: np.ndarray, picked: GraspSurface, margin: float) -> np.ndarray:
    axis = np.asarray(picked.axis[:2], float)
    axis = axis / max(float(np.linalg.norm(axis)), 1e-9)
    offset = xy - np.asarray(picked.point[:2], float)
    along, across = np.abs(offset @ axis), np.abs(offset @ np.array([-axis[1], axis[0]]))
    return (along <= picked.length_m / 2 + margin) & (across <= picked.width_m / 2 + margin)


def depth_clutter(
    points: np.ndarray,
    tray: TrayPose,
    picked: GraspSurface | None,
    arm_chain: np.ndarray,
    settings: ClutterSettings,
) -> tuple[Box, ...]:
    """The depth clutter columns (module docstring) of base-frame `points` (any shape (..., 3), NaN = no
    depth); `picked` None: nothing is being picked."""
    pts = np.asarray(points, float).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    height = pts[:, 2] - settings.table_z
    pts, height = pts[height > settings.min_height_m], height[height > settings.min_height_m]
    local = _tray_local(pts[:, :2], tray)
    half = np.asarray(tray.size[:2], float) / 2
    in_footprint = np.all(local <= half + settings.tray_margin_m, axis=1)
    on_floor = np.all(local < half - settings.tray_wall_band_m, axis=1)
    floor_z = settings.table_z + settings.tray_floor_m
    keep = ~in_footprint | (on_floor & (height > settings.tray_floor_m + settings.min_height_m))
    if picked is not None:
        keep &= ~_over_picked(pts[:, :2], picked, settings.picked_margin_m)
    pts, on_floor = pts[keep], on_floor[keep]
    chain = np.asarray(arm_chain, float).reshape(-1, 3)
    if len(chain) >= 2:
        off_arm = ~_near_chain(pts, chain, settings.arm_radius_m)
        pts, on_floor = pts[off_arm], on_floor[off_arm]
    if len(pts) == 0:
        return ()
    cells = np.floor(pts[:, :2] / settings.voxel_m).astype(np.int64)
    key = (cells[:, 0] - cells[:, 0].min()) * (int(np.ptp(cells[:, 1])) + 1) + (cells[:, 1] - cells[:, 1].min())
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    boxes: list[Box] = []
    for index, member in enumerate(np.split(order, np.cumsum(counts)[:-1])):
        if counts[index] < settings.min_points:
            continue
        cell = pts[member]
        lo, hi = cell[:, :2].min(axis=0), cell[:, :2].max(axis=0)
        bottom = floor_z if bool(on_floor[member].any()) else settings.table_z
        top = float(cell[:, 2].max())
        size = np.array([*np.maximum(hi - lo, MIN_EXTENT_M), top - bottom])
        centre = np.array([*(lo + hi) / 2, (top + bottom) / 2])
        boxes.append(Box(f"{CLUTTER_PREFIX}{len(boxes)}", size, RigidTransform(Rotation.identity(), centre)))
    return tuple(boxes)
