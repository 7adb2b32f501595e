"""Where the tray stands, measured from depth: its walls are the only thing on the table as tall as they
are, standing on a known footprint near where the config puts it.

`measure_tray(points, expected, table_z)` takes the depth points (robot base frame) near the expected
tray and finds the pose, within a few centimetres and degrees of the expected one, at which the tray's
footprint explains them best: walls standing along its rim, its floor free (objects beside the tray
stand as tall as its walls, so height alone does not tell them apart). `compare_tray` says how far that
is from the config (`vla-r1 doctor` before a night); `locate_tray` is what the planning node acts on where
no simulator reports the tray: the measured pose, or `TrayOffConfig` naming the offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.scene import ObjectState


@dataclass(frozen=True)
class TrayPose:
    """Where the tray stands (base frame): centre of its footprint, size (x, y, wall height), yaw."""

    centre: np.ndarray
    size: np.ndarray
    yaw_rad: float = 0.0

    @classmethod
    def of(cls, tray: ObjectState) -> TrayPose:
        """Where the simulator put its tray (an ObjectState: only the simulator knows one)."""
        yaw = float(Rotation.from_quat(tray.quat_xyzw).as_euler("xyz")[2])
        return cls(np.array(tray.position, float), np.array(tray.size, float), yaw)

    @classmethod
    def configured(cls, workcell_config: dict[str, Any]) -> TrayPose:
        """Where config/workcell.yaml says a real cell's tray stands (`collision.tray_when_unseen`)."""
        unseen = workcell_config["collision"]["tray_when_unseen"]
        return cls(np.array(unseen["centre_base"], float), np.array(unseen["size_m"], float), float(unseen["yaw_rad"]))

    def describe(self) -> str:
        return f"({self.centre[0]:.3f}, {self.centre[1]:.3f}) m, yaw {np.degrees(self.yaw_rad):.1f} deg"


class TrayNotFound(ValueError):
    """Depth shows no tray near where it is expected."""


class TrayOffConfig(ValueError):
    """The tray measured from depth stands further from the config than the tolerance."""


@dataclass(frozen=True)
class TrayTolerance:
    """How far the measured tray may stand from the expected one (workspace `doctor.tray_tolerance_*`)."""

    centre_m: float
    yaw_deg: float

    @classmethod
    def from_config(cls, workspace_config: dict[str, Any]) -> TrayTolerance:
        doctor = workspace_config["doctor"]
        return cls(float(doctor["tray_tolerance_m"]), float(doctor["tray_tolerance_deg"]))


@dataclass(frozen=True)
class TrayComparison:
    offset_m: float  # of the centres, in the table plane
    turned_deg: float
    within: bool

    def describe(self, measured: TrayPose, expected: TrayPose) -> str:
        return (
            f"tray expected at ({expected.centre[0]:.3f}, {expected.centre[1]:.3f}) m, measured at "
            f"({measured.centre[0]:.3f}, {measured.centre[1]:.3f}) m: {self.offset_m * 1000:.0f} mm and "
            f"{self.turned_deg:.0f} deg off"
        )


def compare_tray(measured: TrayPose, expected: TrayPose, tolerance: TrayTolerance) -> TrayComparison:
    offset = float(np.linalg.norm(measured.centre[:2] - expected.centre[:2]))
    turned = yaw_difference_deg(measured.yaw_rad, expected.yaw_rad)
    return TrayComparison(offset, turned, offset <= tolerance.centre_m and turned <= tolerance.yaw_deg)


SEARCH_M = 0.08  # how far from the expected centre the tray is looked for
SEARCH_DEG = 10.0  # ...and how far turned
RIM_BAND_M = 0.02  # the band inside the footprint's edge where the walls stand
MIN_SCORE = 0.3  # of the best pose: walls standing along its rim, its floor free
MIN_WALL_POINTS = 50  # of a pose's rim band in view


SCORE_CELL_M = 0.001  # the grid the points are counted on (far finer than the search steps)


def _scores(xy: np.ndarray, standing: np.ndarray, centres: np.ndarray, yaw: float, half: np.ndarray) -> np.ndarray:
    """How well a tray at each of `centres` (K, 2), turned `yaw`, explains the points: the fraction of its
    rim band that stands at wall height, less the fraction of its floor that does (an object beside the
    tray stands too); -1 where fewer than MIN_WALL_POINTS of the rim band are in view.

    In the tray's frame every region is an axis-aligned rectangle, so the points are counted once on a
    `SCORE_CELL_M` grid and each rectangle's count read off a summed-area table: every pose of one yaw
    costs a few look-ups instead of a pass over the points (the counts move by at most a cell's width)."""
    c, s = np.cos(yaw), np.sin(yaw)
    rotation = np.array([[c, -s], [s, c]])
    local, shifted = xy @ rotation, centres @ rotation  # (xy - centre) @ R == xy @ R - centre @ R
    origin = local.min(axis=0) - SCORE_CELL_M
    shape = np.ceil((local.max(axis=0) - origin) / SCORE_CELL_M).astype(int) + 2
    cells = np.floor((local - origin) / SCORE_CELL_M).astype(int)
    flat = cells[:, 0] * shape[1] + cells[:, 1]
    tables = []
    for weights in (None, standing.astype(float)):
        counts = np.bincount(flat, weights=weights, minlength=shape[0] * shape[1]).reshape(shape)
        table = np.zeros((shape[0] + 1, shape[1] + 1))
        table[1:, 1:] = counts.cumsum(axis=0).cumsum(axis=1)
        tables.append(table)

    def inside(table: np.ndarray, extent: np.ndarray) -> np.ndarray:
        lo = np.clip(np.floor((shifted - extent - origin) / SCORE_CELL_M).astype(int), 0, shape - 1)
        hi = np.clip(np.floor((shifted + extent - origin) / SCORE_CELL_M).astype(int) + 1, 0, shape)
        return (
            table[hi[:, 0], hi[:, 1]]
            - table[lo[:, 0], hi[:, 1]]
            - table[hi[:, 0], lo[:, 1]]
            + table[lo[:, 0], lo[:, 1]]
        )

    floor_half = half - RIM_BAND_M - 0.01
    rim_all = inside(tables[0], half) - inside(tables[0], half - RIM_BAND_M)
    rim_standing = inside(tables[1], half) - inside(tables[1], half - RIM_BAND_M)
    floor_all, floor_standing = inside(tables[0], floor_half), inside(tables[1], floor_half)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = rim_standing / rim_all - np.where(floor_all > 0, floor_standing / np.maximum(floor_all, 1), 0.0)
    return np.where(rim_all < MIN_WALL_POINTS, -1.0, score)


def measure_tray(points: np.ndarray, expected: TrayPose, table_z: float) -> TrayPose:
    """The tray's pose from depth points (N, 3) in the base frame: of the poses within SEARCH_M and
    SEARCH_DEG of `expected` (a coarse grid, then a fine one around the best), the one whose rim band
    stands at wall height while its floor does not. TrayNotFound when no pose scores MIN_SCORE."""
    points = np.asarray(points, float).reshape(-1, 3)
    half = np.asarray(expected.size[:2], float) / 2
    wall = float(expected.size[2])
    reach = float(np.linalg.norm(half)) + SEARCH_M
    near = np.linalg.norm(points[:, :2] - expected.centre[:2], axis=1) <= reach
    xy = points[near, :2][:: max(1, int(near.sum()) // 8000)]  # a few thousand points are plenty
    standing = (points[near, 2][:: max(1, int(near.sum()) // 8000)] - table_z) > wall / 2
    best = (-1.0, np.asarray(expected.centre[:2], float), float(expected.yaw_rad))
    if len(xy) == 0:
        raise TrayNotFound(f"no depth within {reach:.2f} m of ({expected.centre[0]:.2f}, {expected.centre[1]:.2f}) m")
    for step_m, step_deg, span_m, span_deg in ((0.01, 2.5, SEARCH_M, SEARCH_DEG), (0.002, 0.5, 0.01, 2.5)):
        centre0, yaw0 = best[1], best[2]
        offsets = np.arange(-span_m, span_m + 1e-9, step_m)
        centres = centre0 + np.stack(np.meshgrid(offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 2)
        for dyaw in np.radians(np.arange(-span_deg, span_deg + 1e-9, step_deg)):
            scores = _scores(xy, standing, centres, yaw0 + dyaw, half)
            i = int(np.argmax(scores))
            if scores[i] > best[0]:
                best = (float(scores[i]), centres[i], yaw0 + dyaw)
    score, centre, yaw = best
    if score < MIN_SCORE:
        raise TrayNotFound(
            f"no tray within {SEARCH_M * 100:.0f} cm and {SEARCH_DEG:.0f} deg of ({expected.centre[0]:.2f}, "
            f"{expected.centre[1]:.2f}) m: the best pose has walls along {max(score, 0):.0%} of its rim"
        )
    return TrayPose(np.array([*centre, expected.centre[2]]), np.array([*(2 * half), wall]), float(yaw))


def yaw_difference_deg(a: float, b: float) -> float:
    """How far apart two yaws of a rectangle are, in degrees: a quarter turn maps it onto itself."""
    return float(abs((np.degrees(a - b) + 45.0) % 90.0 - 45.0))


def locate_tray(points: np.ndarray, expected: TrayPose, table_z: float, tolerance: TrayTolerance) -> TrayPose:
    """The tray as measured (`measure_tray`) when it stands within `tolerance` of `expected`; TrayNotFound
    when depth shows none, TrayOffConfig (naming the offset) when it stands further off."""
    measured = measure_tray(points, expected, table_z)
    comparison = compare_tray(measured, expected, tolerance)
    if not comparison.within:
        raise TrayOffConfig(
            f"{comparison.describe(measured, expected)} (tolerance {tolerance.centre_m * 1000:.0f} mm, "
            f"{tolerance.yaw_deg:.0f} deg)"
        )
    return measured
