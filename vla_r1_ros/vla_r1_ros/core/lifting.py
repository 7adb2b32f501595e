"""Lift the model's 2-D answer (pixel box, pixel waypoints) to 3-D through an aligned depth image.

Plain Python (numpy + OpenCV), no ROS. Points come out in the camera optical frame (x right, y down,
z forward); `LiftedPrediction.transformed(base_T_camera)` moves them to the robot base frame with the
extrinsics of `config/camera.yaml`.

How the box becomes a grasp point. A box drawn around an object also covers background (the table
around and behind it), and a camera looking down at an angle sees the table at the bottom of the box
nearer than the object's far side, so "nearest depth" alone confuses the two. Instead:
1. the support surface is a plane fitted (RANSAC) to the depth in a ring just outside the box;
2. the object is what stands above that plane inside the box (largest connected blob, so a
   neighbour poking into the box is ignored);
3. the grasp point is the centre of the object's top band (its highest `top_band_m`), on its surface;
4. the gripper axis comes from the minimum-area rectangle of the object's footprint on the plane.
Because "up" is the plane's normal, this works in the camera frame alone (the `vla-r1 lift` CLI has
no extrinsics) and does not depend on the camera's tilt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform


class LiftError(ValueError):
    """Lifting failed. `kind`: outside_image, nan, depth_hole, no_support, no_surface, bad_input; and stale
    (raised by the planning node when no depth frame matches the prediction's image)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class LiftParams:
    window_radius_px: int = 3  # robust depth: median over a (2r+1)^2 window of valid pixels
    min_depth_m: float = 0.15  # outside [min, max] the sensor's value is not trusted
    max_depth_m: float = 3.0
    depth_units_m: float = 0.001  # uint16 depth -> metres (RealSense z16 / 16UC1 millimetres)
    ring_margin_px: int = 12  # width of the background ring around the box (support plane fit)
    min_support_points: int = 30
    plane_inlier_m: float = 0.006  # RANSAC inlier distance for the support plane
    min_object_height_m: float = 0.008  # a pixel belongs to the object when this far above the plane
    min_object_pixels: int = 12
    top_band_m: float = 0.01  # the object's top surface: points within this of its highest point

    @classmethod
    def from_config(cls, workspace_config: dict[str, Any], camera_config: dict[str, Any]) -> LiftParams:
        """`lifting:` of config/workspace.yaml, depth range and units from config/camera.yaml."""
        depth = camera_config.get("depth", {})
        values = dict(workspace_config.get("lifting", {}))
        values.setdefault("min_depth_m", depth.get("min_m", cls.min_depth_m))
        values.setdefault("max_depth_m", depth.get("max_m", cls.max_depth_m))
        values.setdefault("depth_units_m", depth.get("units_m", cls.depth_units_m))
        return cls(**values)


@dataclass(frozen=True)
class GraspSurface:
    """The object found inside a box: its top point and the axes a gripper needs. One frame throughout."""

    point: np.ndarray  # (3,) centre of the object's top surface
    up: np.ndarray  # (3,) unit normal of the support plane, pointing away from it (towards the camera)
    axis: np.ndarray  # (3,) unit vector in the support plane along the object's long side
    height_m: float  # top of the object above the support plane
    length_m: float  # footprint along `axis`
    width_m: float  # footprint across `axis` (what the gripper must span)
    pixels: int  # object pixels the estimate rests on

    def transformed(self, transform: RigidTransform) -> GraspSurface:
        rotate = transform.rotation.apply
        return replace(self, point=transform.apply(self.point), up=rotate(self.up), axis=rotate(self.axis))


@dataclass(frozen=True)
class LiftedPrediction:
    grasp: GraspSurface | None  # None when the prediction had no box
    surface_waypoints: np.ndarray | None  # (N, 3) where each waypoint's pixel meets the surface, or None
    frame_id: str

    def transformed(self, parent_T_frame: RigidTransform, parent_frame_id: str) -> LiftedPrediction:
        return LiftedPrediction(
            grasp=None if self.grasp is None else self.grasp.transformed(parent_T_frame),
            surface_waypoints=None if self.surface_waypoints is None else parent_T_frame.apply(self.surface_waypoints),
            frame_id=parent_frame_id,
        )


def depth_in_metres(depth: np.ndarray, params: LiftParams) -> np.ndarray:
    """Depth image -> float metres with NaN where the sensor has no trustworthy value.

    uint16 is scaled by `depth_units_m` (0 = no depth); float input is taken as metres already.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise LiftError("bad_input", f"depth must be a single-channel (H, W) image, got shape {depth.shape}")
    if np.issubdtype(depth.dtype, np.integer):
        metres = depth.astype(np.float64) * params.depth_units_m
    elif np.issubdtype(depth.dtype, np.floating):
        metres = depth.astype(np.float64)
    else:
        raise LiftError("bad_input", f"unsupported depth dtype {depth.dtype}")
    metres[~((metres >= params.min_depth_m) & (metres <= params.max_depth_m))] = np.nan  # also catches NaN
    return metres


def _check_image_size(depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> None:
    if depth_m.shape != (intrinsics.height, intrinsics.width):
        raise LiftError(
            "bad_input",
            f"depth image is {depth_m.shape[1]}x{depth_m.shape[0]} but the intrinsics are for "
            f"{intrinsics.width}x{intrinsics.height}: depth must be aligned to the colour image",
        )


def _check_pixel(u: float, v: float, intrinsics: CameraIntrinsics, what: str) -> None:
    if not (np.isfinite(u) and np.isfinite(v)):
        raise LiftError("nan", f"{what}: pixel ({u}, {v}) is not finite")
    if not intrinsics.contains((u, v)):
        raise LiftError(
            "outside_image",
            f"{what}: pixel ({u:.1f}, {v:.1f}) is outside the {intrinsics.width}x{intrinsics.height} image",
        )


def robust_depth(depth_m: np.ndarray, u: float, v: float, radius: int) -> float:
    """Median of the valid depth in the window around (u, v); NaN when the window is all holes."""
    height, width = depth_m.shape
    iu, iv = round(u), round(v)
    window = depth_m[
        max(0, iv - radius) : min(height, iv + radius + 1), max(0, iu - radius) : min(width, iu + radius + 1)
    ]
    valid = window[np.isfinite(window)]
    return float(np.median(valid)) if valid.size else float("nan")


def lift_pixel(
    depth_m: np.ndarray, intrinsics: CameraIntrinsics, u: float, v: float, params: LiftParams, what: str = "pixel"
) -> np.ndarray:
    """Where the pixel's ray meets the surface: (3,) in the optical frame."""
    _check_pixel(u, v, intrinsics, what)
    z = robust_depth(depth_m, u, v, params.window_radius_px)
    if not np.isfinite(z):
        side = 2 * params.window_radius_px + 1
        raise LiftError(
            "depth_hole",
            f"{what}: depth hole at pixel ({u:.1f}, {v:.1f}): no valid depth in its {side}x{side} window "
            f"(zero, or outside [{params.min_depth_m}, {params.max_depth_m}] m)",
        )
    return intrinsics.deproject(u, v, z)


def lift_waypoints(
    depth_m: np.ndarray, intrinsics: CameraIntrinsics, waypoints_px: Any, params: LiftParams
) -> np.ndarray:
    """Pixel waypoints (N, 2) -> surface points (N, 3) in the optical frame."""
    pixels = np.asarray(waypoints_px, dtype=float).reshape(-1, 2)
    return np.array(
        [lift_pixel(depth_m, intrinsics, u, v, params, what=f"waypoint {i}") for i, (u, v) in enumerate(pixels)]
    ).reshape(-1, 3)


def _pixel_grid_points(depth_m: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray) -> np.ndarray:
    vs, us = np.nonzero(mask)
    return intrinsics.deproject(us, vs, depth_m[vs, us])


def fit_plane(points: np.ndarray, inlier_m: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC plane through (N, 3) points, refined by least squares on its inliers -> (point, unit normal)."""
    best = np.zeros(len(points), dtype=bool)
    for _ in range(64):
        a, b, c = points[rng.choice(len(points), 3, replace=False)]
        normal = np.cross(b - a, c - a)
        norm = np.linalg.norm(normal)
        if norm < 1e-9:
            continue
        inliers = np.abs((points - a) @ (normal / norm)) < inlier_m
        if inliers.sum() > best.sum():
            best = inliers
    if best.sum() < 3:
        raise LiftError("no_support", "could not fit a support plane to the depth around the box")
    centre = points[best].mean(axis=0)
    normal = np.linalg.svd(points[best] - centre, full_matrices=False)[2][-1]
    return centre, normal


def grasp_surface(
    depth_m: np.ndarray, intrinsics: CameraIntrinsics, box_px: Any, params: LiftParams, seed: int = 0
) -> GraspSurface:
    """The object inside the pixel box [x1, y1, x2, y2], in the optical frame (see the module docstring)."""
    _check_image_size(depth_m, intrinsics)
    x1, y1, x2, y2 = (float(c) for c in np.asarray(box_px, dtype=float).reshape(4))
    if not np.all(np.isfinite([x1, y1, x2, y2])):
        raise LiftError("nan", f"box [{x1}, {y1}, {x2}, {y2}] is not finite")
    # Box edges (not pixel centres): the right/bottom edge may equal the image size.
    if min(x1, y1) < 0 or x2 > intrinsics.width or y2 > intrinsics.height:
        raise LiftError(
            "outside_image",
            f"box [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}] reaches outside the "
            f"{intrinsics.width}x{intrinsics.height} image",
        )
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise LiftError("bad_input", f"box [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}] is empty")

    height, width = depth_m.shape
    valid = np.isfinite(depth_m)
    inside = np.zeros_like(valid)
    # Every pixel the box covers, even partly (corners are pixel edges, right/bottom exclusive).
    c1, r1 = int(np.floor(x1)), int(np.floor(y1))
    c2, r2 = int(np.ceil(x2)), int(np.ceil(y2))
    inside[r1:r2, c1:c2] = True
    m = params.ring_margin_px
    ring = np.zeros_like(valid)
    ring[max(0, r1 - m) : min(height, r2 + m), max(0, c1 - m) : min(width, c2 + m)] = True
    ring &= ~inside & valid
    if ring.sum() < params.min_support_points:
        raise LiftError(
            "no_support",
            f"only {int(ring.sum())} valid depth pixels around the box (need {params.min_support_points}) "
            "to find the surface the object stands on",
        )
    rng = np.random.default_rng(seed)
    support = _pixel_grid_points(depth_m, intrinsics, ring)
    if len(support) > 2000:  # a subsample fits the plane as well and keeps RANSAC cheap
        support = support[rng.choice(len(support), 2000, replace=False)]
    plane_point, up = fit_plane(support, params.plane_inlier_m, rng)
    if np.dot(up, -plane_point) < 0:  # orient the normal towards the camera (the optical origin)
        up = -up

    inside &= valid
    if not inside.any():
        raise LiftError("depth_hole", "no valid depth inside the box")
    heights = np.full(depth_m.shape, -np.inf)
    heights[inside] = (_pixel_grid_points(depth_m, intrinsics, inside) - plane_point) @ up
    above = (heights > params.min_object_height_m).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    if count < 2 or stats[1:, cv2.CC_STAT_AREA].max() < params.min_object_pixels:
        raise LiftError(
            "no_surface",
            f"nothing inside the box stands more than {params.min_object_height_m * 1000:.0f} mm above the "
            "surface around it (the box holds only background)",
        )
    blob = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return surface_from_points(_pixel_grid_points(depth_m, intrinsics, blob), heights[blob], plane_point, up, params)


def surface_from_points(
    points: np.ndarray, point_heights: np.ndarray, plane_point: np.ndarray, up: np.ndarray, params: LiftParams
) -> GraspSurface:
    """One object's GraspSurface from its points (N, 3) and their heights above the support plane
    (through `plane_point`, unit normal `up`): steps 3 and 4 of the module docstring. Also the camera
    judge's and the self-reset's (core/tabletop.py), whose support plane is the table or the tray floor."""
    # The top: a high percentile, not the max, so a few flying pixels at the object's edge don't count.
    top = float(np.percentile(point_heights, 98))
    band = point_heights >= top - params.top_band_m
    centre = points[band].mean(axis=0)
    centre += up * (float(np.median(point_heights[band])) - float((centre - plane_point) @ up))

    # Footprint on the support plane, in an in-plane basis, and its minimum-area rectangle.
    e1 = np.array([1.0, 0.0, 0.0]) - up * up[0]
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    flat = np.column_stack([points @ e1, points @ e2]).astype(np.float32)
    corners = cv2.boxPoints(cv2.minAreaRect(flat))
    edges = np.array([corners[1] - corners[0], corners[2] - corners[1]], dtype=float)
    lengths = np.linalg.norm(edges, axis=1)
    long_edge = edges[int(np.argmax(lengths))]
    axis = long_edge[0] * e1 + long_edge[1] * e2
    axis /= np.linalg.norm(axis)
    return GraspSurface(
        point=centre,
        up=up,
        axis=axis,
        height_m=top,
        length_m=float(lengths.max()),
        width_m=float(lengths.min()),
        pixels=len(points),
    )


def check_depth_for(
    depth_frame_id: str, depth_size: tuple[int, int], camera_frame: str, image_size: tuple[int, int]
) -> None:
    """The depth a prediction is lifted with must be aligned to the image the model saw and be in the
    frame the extrinsics are for (LiftError `bad_input` otherwise). An empty frame id is not checked."""
    if depth_frame_id and depth_frame_id != camera_frame:
        raise LiftError("bad_input", f"depth is in {depth_frame_id!r} but the extrinsics are for {camera_frame!r}")
    if tuple(depth_size) != tuple(image_size):
        raise LiftError("bad_input", f"the model saw a {tuple(image_size)} image but the depth is {tuple(depth_size)}")


def lift_prediction(
    depth: np.ndarray,
    intrinsics: CameraIntrinsics,
    box_px: Any | None,
    waypoints_px: Any | None,
    params: LiftParams,
    frame_id: str = "camera_color_optical_frame",
) -> LiftedPrediction:
    """Box and/or waypoints (pixels of the depth image, which is aligned to colour) -> 3-D, optical frame."""
    depth_m = depth_in_metres(depth, params)
    _check_image_size(depth_m, intrinsics)
    grasp = None if box_px is None else grasp_surface(depth_m, intrinsics, box_px, params)
    waypoints = None if waypoints_px is None else lift_waypoints(depth_m, intrinsics, waypoints_px, params)
    return LiftedPrediction(grasp=grasp, surface_waypoints=waypoints, frame_id=frame_id)
