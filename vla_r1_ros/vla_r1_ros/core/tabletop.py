"""What stands on the table, from one RGB-D frame set: the camera judge's and the self-reset's eyes.

`segment_tabletop(view, table_z, tray, settings)` lifts every depth pixel to the robot base frame and
keeps what stands above its support: the table outside the tray's footprint, the tray's floor inside
its walls. What is not an object:
- the tray itself: its footprint (and `tray_margin_m` around it) is never a table object, and only the
  floor inside its sloped walls (`tray_wall_band_m` in from the rim) can hold a tray object;
- the arm (and whatever it holds): any connected part that reaches above `max_object_height_m`;
- specks: parts of fewer than `min_object_pixels` pixels.
Objects that touch in the image are told apart where the depth jumps (one stands in front of the
other) or the colour does (two objects side by side in the tray), so each blob is one object.

Every blob carries its colour statistics (`ColourStats`: CIELAB a*/b*, which shading changes far less
than brightness) for the operator's registry (core/object_registry.py) to recognise it, and its
`GraspSurface` (core/lifting.py's, for core/planning.py). No simulator here: frames only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform
from vla_r1_ros.core.lifting import GraspSurface, LiftParams, depth_in_metres, surface_from_points
from vla_r1_ros.core.tray import TrayPose, measure_tray

UP = np.array([0.0, 0.0, 1.0])
# The tray is measured on every 4th pixel's point in each direction: a couple of thousand points near it,
# which place it as well as all of them, in a tenth of the time (measure_tray scores ~4000 poses).
TRAY_PIXEL_STRIDE = 4
FAR = 1e3  # where a pixel without depth is, for the 3-D jumps: far from every neighbour with depth


@dataclass(frozen=True)
class RgbdView:
    """One frame set as the judge and the reset see it."""

    color: np.ndarray  # (H, W, 3) uint8 rgb
    depth_m: np.ndarray  # (H, W) float metres, NaN or 0 = no depth
    intrinsics: CameraIntrinsics
    base_T_camera: RigidTransform  # base_T_camera_optical (config/camera.yaml extrinsics)
    stamp_ns: int = 0

    def base_points(self, lift: LiftParams, stride: int = 1) -> np.ndarray:
        """(H, W, 3) base-frame point of every pixel (of every `stride`-th row and column), NaN where the
        depth is missing or out of range."""
        depth = depth_in_metres(np.asarray(self.depth_m, dtype=float)[::stride, ::stride], lift)
        v, u = np.mgrid[0 : self.depth_m.shape[0] : stride, 0 : self.depth_m.shape[1] : stride]
        return self.base_T_camera.apply(self.intrinsics.deproject(u, v, depth))


def view_of_frame(frame: Any, base_T_camera: RigidTransform, depth_units_m: float) -> RgbdView:
    """The view of a camera frame (cameras.base.RgbdFrame: colour, uint16 depth, intrinsics, stamp)."""
    depth_m = np.asarray(frame.depth_mm, dtype=float) * depth_units_m
    return RgbdView(frame.color, depth_m, frame.intrinsics, base_T_camera, int(frame.stamp_ns))


@dataclass(frozen=True)
class ColourStats:
    """An object's colour as the camera sees it: mean and covariance of its pixels' CIELAB a*/b*."""

    mean_ab: np.ndarray  # (2,)
    cov_ab: np.ndarray  # (2, 2)

    @classmethod
    def of(cls, rgb_pixels: np.ndarray) -> ColourStats:
        lab = cv2.cvtColor(np.asarray(rgb_pixels, np.float32).reshape(1, -1, 3) / 255.0, cv2.COLOR_RGB2LAB)
        ab = lab.reshape(-1, 3)[:, 1:].astype(float)
        cov = np.cov(ab.T) if len(ab) > 2 else np.zeros((2, 2))
        return cls(ab.mean(axis=0), np.atleast_2d(cov))

    def distance(self, other: ColourStats, floor: float) -> float:
        """Mahalanobis distance of the two means under both spreads (plus `floor`² of noise per axis)."""
        cov = self.cov_ab + other.cov_ab + floor**2 * np.eye(2)
        diff = self.mean_ab - other.mean_ab
        return float(np.sqrt(diff @ np.linalg.solve(cov, diff)))

    def to_json(self) -> dict[str, Any]:
        return {"mean_ab": self.mean_ab.tolist(), "cov_ab": self.cov_ab.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColourStats:
        mean, cov = np.asarray(data["mean_ab"], float), np.asarray(data["cov_ab"], float)
        if mean.shape != (2,) or cov.shape != (2, 2) or not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
            raise ValueError(f"colour statistics need mean_ab (2,) and cov_ab (2, 2), got {mean.shape}, {cov.shape}")
        return cls(mean, cov)


@dataclass(frozen=True)
class Blob:
    """One connected object standing on the table (or on the tray floor)."""

    mask: np.ndarray  # (H, W) bool, its pixels
    centroid: np.ndarray  # (3,) base frame, centre of its top surface
    height_m: float  # top above the surface it stands on
    length_m: float  # footprint: long side
    width_m: float  # footprint: short side
    yaw_rad: float  # the long side's direction in base xy
    appearance: ColourStats

    @property
    def pixels(self) -> int:
        return int(self.mask.sum())

    def grasp_surface(self) -> GraspSurface:
        """Where a top-down grasp takes it (base frame), for core.planning.plan_pick_and_place."""
        axis = np.array([np.cos(self.yaw_rad), np.sin(self.yaw_rad), 0.0])
        return GraspSurface(self.centroid, UP, axis, self.height_m, self.length_m, self.width_m, self.pixels)


@dataclass(frozen=True)
class TabletopScene:
    """What one frame set shows: the objects on the table and those in the tray."""

    on_table: tuple[Blob, ...]
    in_tray: tuple[Blob, ...]
    tray: TrayPose
    tray_floor_z: float  # measured: the floor objects in the tray stand on

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return self.on_table + self.in_tray


@dataclass(frozen=True)
class TabletopSettings:
    """`vision_judge.segmentation` of config/workspace.yaml, with the lifting's depth range and top band."""

    lift: LiftParams  # depth range, min_object_height_m (above the support), top_band_m
    table_z: float  # the table top in the base frame (safety.table_z)
    max_object_height_m: float  # anything connected that reaches higher is the arm
    min_object_pixels: int
    depth_edge_m: float  # neighbouring pixels further apart than this in 3-D belong to different objects
    colour_edge: float  # ...and so do neighbours whose a*/b* differ by more than this
    tray_margin_m: float  # around the tray's footprint nothing is a table object (its outer walls)
    tray_wall_band_m: float  # in from the rim, the tray's walls: only the floor inside holds tray objects
    colour_floor: float  # a*/b* noise of one colour (ColourStats.distance's floor)
    merge_colour_distance: float  # touching parts closer in colour than this are one object

    @classmethod
    def from_config(cls, workspace_config: dict[str, Any], camera_config: dict[str, Any]) -> TabletopSettings:
        judge = workspace_config["vision_judge"]
        values = {**judge["segmentation"], "colour_floor": float(judge["colour_floor"])}
        lift = LiftParams.from_config(workspace_config, camera_config)
        return cls(lift=lift, table_z=float(workspace_config["safety"]["table_z"]), **values)


def tray_local(xy: np.ndarray, tray: TrayPose) -> np.ndarray:
    """Base-frame xy (..., 2) -> the tray's own frame (its centre, its yaw)."""
    c, s = np.cos(tray.yaw_rad), np.sin(tray.yaw_rad)
    return (np.asarray(xy, float) - tray.centre[:2]) @ np.array([[c, -s], [s, c]])


def tray_sample(view: RgbdView, lift: LiftParams) -> np.ndarray:
    """The view's points the tray is measured on (every TRAY_PIXEL_STRIDE-th pixel's, depth holes left out)."""
    sample = view.base_points(lift)[::TRAY_PIXEL_STRIDE, ::TRAY_PIXEL_STRIDE].reshape(-1, 3)
    return sample[np.all(np.isfinite(sample), axis=-1)]


def measure_tray_in(view: RgbdView, expected: TrayPose, table_z: float, lift: LiftParams) -> TrayPose:
    """`core.tray.measure_tray` on the view's depth (TrayNotFound when no tray stands near `expected`)."""
    return measure_tray(tray_sample(view, lift), expected, table_z)


def within_tray(xy: np.ndarray, tray: TrayPose, inset_m: float) -> np.ndarray:
    """Whether base-frame xy (..., 2) lies inside the tray's footprint shrunk by `inset_m` (grown if < 0)."""
    return np.all(np.abs(tray_local(xy, tray)) <= np.asarray(tray.size[:2], float) / 2 - inset_m, axis=-1)


def _edges(points: np.ndarray, ab: np.ndarray, settings: TabletopSettings) -> np.ndarray:
    """Pixels on a boundary between objects: a 3-D or a colour jump to the right or below neighbour."""
    edge = np.zeros(points.shape[:2], bool)
    for axis in (0, 1):
        jump = np.linalg.norm(np.diff(points, axis=axis), axis=-1) > settings.depth_edge_m
        jump |= np.linalg.norm(np.diff(ab, axis=axis), axis=-1) > settings.colour_edge
        if axis == 0:
            edge[:-1] |= jump
        else:
            edge[:, :-1] |= jump
    return edge


def _parts(mask: np.ndarray, edges: np.ndarray, color: np.ndarray, settings: TabletopSettings) -> list[np.ndarray]:
    """The objects in `mask`: its connected parts once the boundary pixels are cut out (4-connected, so a
    one-pixel cut separates), where parts that touch in the image and have one colour are one object
    again (a mug's handle stands in front of its body: a depth jump, not another object)."""
    count, labels = cv2.connectedComponents((mask & ~edges).astype(np.uint8), connectivity=4)
    parts = [labels == i for i in range(1, count)]
    colours = [ColourStats.of(color[part]) for part in parts]
    near = [cv2.dilate(part.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) for part in parts]
    group = list(range(len(parts)))  # union-find over touching parts of one colour

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            touching = bool((near[i] & parts[j]).any())
            if touching and colours[i].distance(colours[j], settings.colour_floor) < settings.merge_colour_distance:
                group[root(j)] = root(i)
    merged: dict[int, np.ndarray] = {}
    for i, part in enumerate(parts):
        merged[root(i)] = merged.get(root(i), np.zeros_like(part)) | part
    return [part for part in merged.values() if part.sum() >= settings.min_object_pixels]


def _blob(mask: np.ndarray, points: np.ndarray, support_z: float, color: np.ndarray, lift: LiftParams) -> Blob:
    pts = points[mask]
    surface = surface_from_points(pts, pts[:, 2] - support_z, np.array([0.0, 0.0, support_z]), UP, lift)
    yaw = float(np.arctan2(surface.axis[1], surface.axis[0]))
    return Blob(
        mask=mask,
        centroid=surface.point,
        height_m=surface.height_m,
        length_m=surface.length_m,
        width_m=surface.width_m,
        yaw_rad=float(yaw - np.pi * np.round(yaw / np.pi)),  # a rectangle's long axis: within ±pi/2
        appearance=ColourStats.of(color[mask]),
    )


def segment_tabletop(view: RgbdView, table_z: float, tray: TrayPose, settings: TabletopSettings) -> TabletopScene:
    """The objects standing on the table outside the tray and on the tray's floor (module docstring)."""
    points = view.base_points(settings.lift)
    valid = np.all(np.isfinite(points), axis=-1)
    filled = np.where(valid[..., None], points, 0.0)
    xy, z = filled[..., :2], filled[..., 2]
    lab = cv2.cvtColor(np.asarray(view.color, np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    edges = _edges(np.where(valid[..., None], points, FAR), lab[..., 1:], settings)

    floor_area = valid & within_tray(xy, tray, settings.tray_wall_band_m)
    low = floor_area & (z - table_z < float(tray.size[2]) / 2)
    floor_z = float(np.median(z[low])) if low.any() else table_z
    lifted = settings.lift.min_object_height_m
    on_table = valid & ~within_tray(xy, tray, -settings.tray_margin_m) & (z - table_z > lifted)
    on_floor = floor_area & (z - floor_z > lifted)
    # The arm: whatever reaches above the tallest object, with everything it touches in the image.
    tall = valid & (z - table_z > settings.max_object_height_m)
    standing = valid & (z - table_z > lifted)
    _, arm_labels = cv2.connectedComponents(standing.astype(np.uint8), connectivity=8)
    arm = np.isin(arm_labels, np.unique(arm_labels[tall & standing])) & standing

    def blobs(area: np.ndarray, support_z: float) -> tuple[Blob, ...]:
        parts = _parts(area & ~arm, edges, view.color, settings)
        return tuple(_blob(part, points, support_z, view.color, settings.lift) for part in parts)

    return TabletopScene(blobs(on_table, table_z), blobs(on_floor, floor_z), tray, floor_z)
