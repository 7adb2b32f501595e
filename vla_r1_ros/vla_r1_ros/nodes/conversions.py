"""Message <-> numpy conversions shared by all nodes (cv_bridge is not a dependency).

Encodings used everywhere: colour `rgb8`, aligned depth `16UC1` millimetres (0 = no depth). Depth
consumers also take `32FC1` metres (REP 118; what depth_image_proc and some drivers publish): the
conversion lives here only, `depth_to_metres` for lifting and `depth_to_mm` for storage.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose
from sensor_msgs.msg import CameraInfo, Image

from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform
from vla_r1_ros.core.lifting import LiftError

_DTYPES = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "mono8": (np.uint8, 1),
    "16UC1": (np.uint16, 1),
    "mono16": (np.uint16, 1),
    "32FC1": (np.float32, 1),
}


def image_to_numpy(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> array (H, W, C) or (H, W); honours `step` padding."""
    if msg.encoding not in _DTYPES:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; expected one of {sorted(_DTYPES)}")
    dtype, channels = _DTYPES[msg.encoding]
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = row[:, : msg.width * channels * dtype.itemsize].copy().view(dtype)
    pixels = pixels.reshape(msg.height, msg.width, channels) if channels > 1 else pixels.reshape(msg.height, msg.width)
    return pixels.astype(dtype.newbyteorder("="), copy=False)


# Depth encodings (REP 118) -> metres per unit: 16UC1 / mono16 in millimetres (0 = no depth), 32FC1 in
# metres (NaN, 0 or inf = no depth).
DEPTH_UNITS_M = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}


def depth_to_metres(msg: Image) -> np.ndarray:
    """Aligned depth (16UC1 mm or 32FC1 m) -> float64 metres, NaN where the sensor gave no depth.
    Any other encoding is a LiftError("bad_input"): a colour image on the depth topic is not depth."""
    if msg.encoding not in DEPTH_UNITS_M:
        raise LiftError(
            "bad_input",
            f"depth image encoding {msg.encoding!r}: expected 16UC1 (millimetres) or 32FC1 (metres)",
        )
    metres = image_to_numpy(msg).astype(np.float64) * DEPTH_UNITS_M[msg.encoding]
    metres[~(np.isfinite(metres) & (metres > 0.0))] = np.nan
    return metres


def depth_to_mm(msg: Image) -> np.ndarray:
    """Aligned depth (16UC1 mm or 32FC1 m) -> uint16 millimetres, 0 = no depth (the episode PNG)."""
    if msg.encoding in ("16UC1", "mono16"):
        return image_to_numpy(msg)
    millimetres = np.nan_to_num(np.round(depth_to_metres(msg) * 1000.0), nan=0.0)
    return np.clip(millimetres, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def numpy_to_image(array: np.ndarray, encoding: str, stamp: Time | None = None, frame_id: str = "") -> Image:
    dtype, channels = _DTYPES[encoding]
    array = np.ascontiguousarray(array, dtype=dtype)
    expected_ndim = 3 if channels > 1 else 2
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ValueError(f"array of shape {array.shape} does not fit encoding {encoding}")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * array.itemsize
    msg.data = array.tobytes()
    return msg


def camera_info_msg(intrinsics: CameraIntrinsics, stamp: Time | None = None, frame_id: str = "") -> CameraInfo:
    msg = CameraInfo()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.width, msg.height = intrinsics.width, intrinsics.height
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = intrinsics.k.reshape(-1).tolist()
    msg.r = np.eye(3).reshape(-1).tolist()
    p = np.zeros((3, 4))
    p[:, :3] = intrinsics.k
    msg.p = p.reshape(-1).tolist()
    return msg


def intrinsics_from_camera_info(msg: CameraInfo) -> CameraIntrinsics:
    return CameraIntrinsics.from_k(msg.width, msg.height, msg.k)


def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def pose_msg(transform: RigidTransform) -> Pose:
    msg = Pose()
    msg.position.x, msg.position.y, msg.position.z = (float(v) for v in transform.translation)
    q = transform.quat_xyzw
    msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = (float(v) for v in q)
    return msg


def transform_from_pose(msg: Pose) -> RigidTransform:
    o = msg.orientation
    return RigidTransform.from_pose([msg.position.x, msg.position.y, msg.position.z], [o.x, o.y, o.z, o.w])


def point_msg(xyz) -> Point:
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def point_to_numpy(msg: Point) -> np.ndarray:
    return np.array([msg.x, msg.y, msg.z])
