"""Lifting pixels to 3-D: robust depth, clear errors, the object (not the background) inside a box, the
grasp axis of a rotated object — on synthetic depth rendered through the real camera model — and, in
the simulated workcell, the lifted grasp point within 1 cm of each object's true top centre."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform, camera_extrinsics
from vla_r1_ros.core.lifting import (
    LiftError,
    LiftParams,
    depth_in_metres,
    grasp_surface,
    lift_pixel,
    lift_prediction,
    robust_depth,
)

CAMERA = load_config("camera")
K = CameraIntrinsics.from_config(CAMERA)
BASE_T_CAMERA = camera_extrinsics(CAMERA)
PARAMS = LiftParams.from_config(load_config("workspace"), CAMERA)


def render_block(centre, size, yaw) -> np.ndarray:
    """uint16 mm depth of a table (z = 0) with one box on it, seen by the configured camera (ray casting)."""
    us, vs = np.meshgrid(np.arange(K.width), np.arange(K.height))
    rays_camera = K.deproject(us, vs, 1.0).reshape(-1, 3)  # z = 1: the ray parameter is the depth
    rays = BASE_T_CAMERA.rotation.apply(rays_camera)
    origin = BASE_T_CAMERA.translation
    t_table = -origin[2] / rays[:, 2]
    block_T_base = RigidTransform(Rotation.from_euler("z", yaw), np.asarray(centre, float)).inverse()
    o, d = block_T_base.apply(origin), block_T_base.rotation.apply(rays)
    half = np.asarray(size) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - o) / d, (half - o) / d
    near, far = np.nanmax(np.minimum(t1, t2), axis=1), np.nanmin(np.maximum(t1, t2), axis=1)
    t = np.where((far >= near) & (near > 0), np.minimum(near, t_table), t_table)
    return np.rint(t.reshape(K.height, K.width) * 1000).astype(np.uint16)


def block_box_px(centre, size, yaw, margin=0.0) -> list[float]:
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * np.asarray(size) / 2
    pixels = K.project(
        BASE_T_CAMERA.inverse().apply(RigidTransform(Rotation.from_euler("z", yaw), np.asarray(centre)).apply(corners))
    )
    (x1, y1), (x2, y2) = pixels.min(axis=0), pixels.max(axis=0)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    return [x1 - mx, y1 - my, x2 + mx, y2 + my]


def lift_block(centre, size, yaw, margin=0.0):
    depth = render_block(centre, size, yaw)
    box = block_box_px(centre, size, yaw, margin)
    return grasp_surface(depth_in_metres(depth, PARAMS), K, box, PARAMS).transformed(BASE_T_CAMERA)


def test_robust_depth_is_the_median_of_valid_pixels():
    depth = np.full((20, 20), 1000, np.uint16)
    depth[8:13, 8:13] = [[1000, 0, 1010, 65535, 990]] * 5  # holes, a spike beyond max range, noise
    metres = depth_in_metres(depth, PARAMS)
    assert robust_depth(metres, 10, 10, radius=2) == pytest.approx(1.0, abs=0.011)
    assert np.isnan(metres[8, 9]) and np.isnan(metres[8, 11])


def test_depth_hole_nan_and_outside_pixels_are_clear_errors():
    depth = np.full((K.height, K.width), 800, np.uint16)
    depth[100:120, 100:120] = 0
    metres = depth_in_metres(depth, PARAMS)
    with pytest.raises(LiftError) as hole:
        lift_pixel(metres, K, 110, 110, PARAMS, what="waypoint 2")
    assert hole.value.kind == "depth_hole" and "waypoint 2" in str(hole.value)
    with pytest.raises(LiftError) as nan:
        lift_pixel(metres, K, float("nan"), 3, PARAMS)
    assert nan.value.kind == "nan"
    with pytest.raises(LiftError) as outside:
        lift_pixel(metres, K, 700, 10, PARAMS)
    assert outside.value.kind == "outside_image"
    float_depth = metres.copy()
    float_depth[200:210, 200:210] = np.nan  # float depth in metres: NaN is a hole too
    with pytest.raises(LiftError):
        lift_pixel(float_depth, K, 205, 205, PARAMS)
    assert lift_pixel(metres, K, K.cx, K.cy, PARAMS) == pytest.approx([0.0, 0.0, 0.8])


def test_waypoint_lands_on_the_surface():
    depth = render_block((0.45, 0.1, 0.025), (0.05, 0.05, 0.05), 0.0)
    table_point = np.array([0.40, -0.15, 0.0])
    u, v = K.project(BASE_T_CAMERA.inverse().apply(table_point))
    lifted = lift_prediction(depth, K, None, [[u, v]], PARAMS).transformed(BASE_T_CAMERA, "panda_link0")
    assert lifted.grasp is None
    np.testing.assert_allclose(lifted.surface_waypoints[0], table_point, atol=0.003)


@pytest.mark.parametrize("margin", [0.0, 0.4])
def test_box_grasp_point_is_on_the_object_not_the_background(margin):
    # A loose box (40 % larger) covers a lot of table; the grasp point must still be the object's top.
    centre, size = np.array([0.45, 0.05, 0.03]), (0.05, 0.04, 0.06)
    grasp = lift_block(centre, size, 0.3, margin)
    top_centre = centre + np.array([0.0, 0.0, size[2] / 2])
    assert np.linalg.norm(grasp.point - top_centre) < 0.006
    assert grasp.height_m == pytest.approx(size[2], abs=0.004)
    np.testing.assert_allclose(grasp.up, [0, 0, 1], atol=0.01)  # the table's normal, found without extrinsics


@pytest.mark.parametrize("yaw", [-1.2, -0.5, 0.0, 0.4, 1.0])
def test_axis_of_a_rotated_rectangle(yaw):
    grasp = lift_block((0.45, 0.0, 0.02), (0.09, 0.03, 0.04), yaw)
    found = np.arctan2(grasp.axis[1], grasp.axis[0])
    assert abs(np.sin(found - yaw)) < np.sin(np.radians(3))  # the long side, modulo 180 degrees
    assert grasp.length_m == pytest.approx(0.09, abs=0.008)
    assert grasp.width_m == pytest.approx(0.03, abs=0.008)


def test_box_on_bare_table_has_no_surface():
    depth = render_block((0.45, 0.0, 0.02), (0.05, 0.05, 0.04), 0.0)
    with pytest.raises(LiftError) as info:
        grasp_surface(depth_in_metres(depth, PARAMS), K, [100, 300, 160, 360], PARAMS)
    assert info.value.kind == "no_surface"


def test_box_without_surroundings_is_rejected():
    depth = np.zeros((K.height, K.width), np.uint16)
    depth[200:260, 300:360] = 700  # depth only inside the box
    with pytest.raises(LiftError) as info:
        grasp_surface(depth_in_metres(depth, PARAMS), K, [300, 200, 360, 260], PARAMS)
    assert info.value.kind == "no_support"


def test_box_outside_the_image_is_rejected():
    depth = render_block((0.45, 0.0, 0.02), (0.05, 0.05, 0.04), 0.0)
    with pytest.raises(LiftError) as info:
        lift_prediction(depth, K, [600, 100, 700, 200], None, PARAMS)
    assert info.value.kind == "outside_image"


# Shapes whose ground-truth "top centre" (centre of the bounding box's top face) is a point of the
# object's top surface. A mug's is over its hollow (the handle shifts the box) and a duck's is off its
# head, so for those the lifted surface point is legitimately ~1 cm away: they are left out here.
REGULAR_SHAPES = ("cube", "cuboid", "cylinder", "sphere")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_in_the_workcell_grasp_point_is_within_1cm_of_the_true_top_centre(workcell, seed):
    workcell.reset(seed)
    frame, scene = workcell.capture()
    checked = 0
    for obj in scene.objects:
        if obj.shape not in REGULAR_SHAPES or obj.bbox_px is None:
            continue
        lifted = lift_prediction(frame.depth_mm, frame.intrinsics, obj.bbox_px, None, PARAMS)
        point = lifted.transformed(BASE_T_CAMERA, "panda_link0").grasp.point
        error = np.linalg.norm(point - obj.top_center)
        assert error < 0.01, f"{obj.name}: lifted grasp point {error * 1000:.1f} mm from the true top centre"
        checked += 1
    assert checked >= 1
