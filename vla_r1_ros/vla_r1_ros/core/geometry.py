"""Pinhole camera model and rigid transforms (scipy Rotation; no hand-rolled quaternion code).

Conventions: pixel (u, v) with u to the right and v down, integer values at pixel centres, as
`rs2_deproject_pixel_to_point`; camera optical frame with x right, y down, z forward (REP 103);
quaternions in ROS order (x, y, z, w).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class CameraIntrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_config(cls, camera_config: dict[str, Any]) -> CameraIntrinsics:
        image, k = camera_config["image"], camera_config["intrinsics"]
        return cls(
            int(image["width"]), int(image["height"]), float(k["fx"]), float(k["fy"]), float(k["cx"]), float(k["cy"])
        )

    @classmethod
    def from_k(cls, width: int, height: int, k: Any) -> CameraIntrinsics:
        """From a row-major 3x3 camera matrix, as in sensor_msgs/CameraInfo.k."""
        k = np.asarray(k, dtype=float).reshape(3, 3)
        return cls(int(width), int(height), k[0, 0], k[1, 1], k[0, 2], k[1, 2])

    @property
    def k(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def deproject(self, u: Any, v: Any, depth_m: Any) -> np.ndarray:
        """Pixels and metric depth (broadcastable) -> points (..., 3) in the optical frame."""
        u, v, z = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float), np.asarray(depth_m, float))
        return np.stack([(u - self.cx) / self.fx * z, (v - self.cy) / self.fy * z, z], axis=-1)

    def project(self, points: Any) -> np.ndarray:
        """Points (..., 3) in the optical frame -> pixels (..., 2). Points must have z > 0."""
        p = np.asarray(points, dtype=float)
        z = p[..., 2]
        if np.any(z <= 0):
            raise ValueError("cannot project a point at or behind the camera (z <= 0)")
        return np.stack([self.fx * p[..., 0] / z + self.cx, self.fy * p[..., 1] / z + self.cy], axis=-1)

    def contains(self, uv: Any) -> np.ndarray:
        uv = np.asarray(uv, dtype=float)
        return (uv[..., 0] >= 0) & (uv[..., 0] <= self.width - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= self.height - 1)


@dataclass(frozen=True)
class RigidTransform:
    """parent_T_child: maps points expressed in the child frame into the parent frame."""

    rotation: Rotation
    translation: np.ndarray

    @classmethod
    def identity(cls) -> RigidTransform:
        return cls(Rotation.identity(), np.zeros(3))

    @classmethod
    def from_config(cls, transform: dict[str, Any]) -> RigidTransform:
        """From `{translation: [x, y, z], rotation_xyzw: [x, y, z, w]}`."""
        return cls(Rotation.from_quat(transform["rotation_xyzw"]), np.asarray(transform["translation"], float))

    @classmethod
    def from_pose(cls, position: Any, quat_xyzw: Any) -> RigidTransform:
        return cls(Rotation.from_quat(quat_xyzw), np.asarray(position, float))

    def apply(self, points: Any) -> np.ndarray:
        p = np.asarray(points, dtype=float)
        return self.rotation.apply(p.reshape(-1, 3)).reshape(p.shape) + self.translation

    def inverse(self) -> RigidTransform:
        inv = self.rotation.inv()
        return RigidTransform(inv, -inv.apply(self.translation))

    def __matmul__(self, other: RigidTransform) -> RigidTransform:
        return RigidTransform(self.rotation * other.rotation, self.rotation.apply(other.translation) + self.translation)

    @property
    def quat_xyzw(self) -> np.ndarray:
        return self.rotation.as_quat()

    def as_matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.rotation.as_matrix()
        m[:3, 3] = self.translation
        return m


def look_at(eye: Any, target: Any, up: Any = (0.0, 0.0, 1.0)) -> RigidTransform:
    """Pose of a camera optical frame (z forward, y down) at `eye` looking at `target`."""
    eye, target, up = (np.asarray(a, dtype=float) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    y = -up - np.dot(-up, z) * z
    if np.linalg.norm(y) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to `up`")
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return RigidTransform(Rotation.from_matrix(np.column_stack([x, y, z])), eye)


def camera_extrinsics(camera_config: dict[str, Any]) -> RigidTransform:
    """base_T_camera_optical from config/camera.yaml."""
    return RigidTransform.from_config(camera_config["extrinsics"])
