"""A RealSense made of software sensors (`rs.software_device`), for tests and tools without hardware.

It has what the live code path needs from a D400 camera: a z16 depth sensor with `depth_units`, an
rgb8 colour sensor, per-stream intrinsics, depth->colour extrinsics and a device serial number.
Hand `.device` (or a `rs.recorder` wrapping it) to `RealSenseCamera(find_device=lambda: ...)`, then
`push` frames. `record` makes a RealSense recording of such a camera, as `rs.recorder` writes one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyrealsense2 as rs

from vla_r1_ros.cameras.base import RgbdFrame
from vla_r1_ros.cameras.realsense import DepthFilters, RealSenseCamera
from vla_r1_ros.core.geometry import CameraIntrinsics


def _rs_intrinsics(k: CameraIntrinsics) -> rs.intrinsics:
    out = rs.intrinsics()
    out.width, out.height = k.width, k.height
    out.fx, out.fy, out.ppx, out.ppy = k.fx, k.fy, k.cx, k.cy
    out.model = rs.distortion.none
    out.coeffs = [0.0] * 5
    return out


class SoftwareRealSense:
    """Depth and colour streams of one size and rate; depth->colour is a pure translation."""

    def __init__(
        self,
        depth_intrinsics: CameraIntrinsics,
        color_intrinsics: CameraIntrinsics,
        depth_to_color_m: Any = (0.015, 0.0, 0.0),
        depth_units_m: float = 0.001,
        fps: int = 30,
        serial: str = "000000000001",
        name: str = "Software RealSense",
    ) -> None:
        if (depth_intrinsics.width, depth_intrinsics.height) != (color_intrinsics.width, color_intrinsics.height):
            raise ValueError("depth and colour streams must have the same size")
        self.width, self.height = color_intrinsics.width, color_intrinsics.height
        self.fps = fps
        self.depth_units_m = depth_units_m
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.name, name)
        self.device.register_info(rs.camera_info.serial_number, serial)
        self._depth_sensor = self.device.add_sensor("Stereo Module")
        self._color_sensor = self.device.add_sensor("RGB Camera")
        self._depth_profile = self._add_stream(
            self._depth_sensor, rs.stream.depth, rs.format.z16, 2, depth_intrinsics, 0
        )
        self._color_profile = self._add_stream(
            self._color_sensor, rs.stream.color, rs.format.rgb8, 3, color_intrinsics, 1
        )
        self._depth_sensor.add_read_only_option(rs.option.depth_units, depth_units_m)
        extrinsics = rs.extrinsics()
        extrinsics.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        extrinsics.translation = [float(t) for t in depth_to_color_m]
        self._depth_profile.register_extrinsics_to(self._color_profile, extrinsics)
        # Pair depth and colour frames by timestamp, as a D400's syncer does.
        self.device.create_matcher(rs.matchers.dlr_c)

    def _add_stream(
        self, sensor: rs.software_sensor, kind: rs.stream, fmt: rs.format, bpp: int, k: CameraIntrinsics, uid: int
    ) -> rs.video_stream_profile:
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid = kind, 0, uid
        stream.width, stream.height, stream.fps = self.width, self.height, self.fps
        stream.bpp, stream.fmt = bpp, fmt
        stream.intrinsics = _rs_intrinsics(k)
        return sensor.add_video_stream(stream).as_video_stream_profile()

    def push(
        self,
        depth_raw: np.ndarray,
        color: np.ndarray,
        frame_number: int,
        timestamp_ms: float,
        domain: rs.timestamp_domain = rs.timestamp_domain.global_time,
    ) -> None:
        """Inject one depth (uint16 counts of `depth_units_m`) and colour (uint8 RGB) frame pair."""
        for sensor, profile, pixels, bpp in (
            (self._depth_sensor, self._depth_profile, np.ascontiguousarray(depth_raw, np.uint16), 2),
            (self._color_sensor, self._color_profile, np.ascontiguousarray(color, np.uint8), 3),
        ):
            frame = rs.software_video_frame()
            frame.pixels = pixels
            frame.stride, frame.bpp = self.width * bpp, bpp
            frame.timestamp, frame.domain, frame.frame_number = timestamp_ms, domain, frame_number
            frame.profile = profile
            if sensor is self._depth_sensor:
                frame.depth_units = self.depth_units_m
            sensor.on_video_frame(frame)


def box_scene(width: int, height: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth (mm counts) of a wall at 1 m with a box face at 0.5 m; colour noise that differs per frame."""
    depth = np.full((height, width), 1000, np.uint16)
    depth[height // 3 : height // 2, 3 * width // 8 : width // 2] = 500
    color = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return depth, color


def record(
    path: str | Path, camera: SoftwareRealSense, frames: Sequence[tuple[np.ndarray, np.ndarray]]
) -> dict[int, RgbdFrame]:
    """Record `frames` (depth counts, RGB colour; numbered from 1) at the camera's rate to `path` (.db3)
    with `rs.recorder`, stamped with the host clock as they are pushed.

    The frames also pass through `RealSenseCamera` (all post filters off) while recording; returns
    what it delivered, by sequence number, to compare a replay against.
    """
    recorder = rs.recorder(str(path), camera.device)
    live = RealSenseCamera(
        width=camera.width,
        height=camera.height,
        fps=camera.fps,
        filters=DepthFilters(False, False, False),
        find_device=lambda device=recorder: device,  # bound now; deleted with `live` below
    )
    live.start()
    delivered = {}
    for index, (depth_raw, color) in enumerate(frames, start=1):
        started = time.monotonic()
        camera.push(depth_raw, color, frame_number=index, timestamp_ms=time.time() * 1e3)
        frame = live.read(1.0)
        if frame is not None:
            delivered[frame.sequence] = frame
        time.sleep(max(0.0, 1.0 / camera.fps - (time.monotonic() - started)))
    live.stop()
    # The recorder finishes the file when it is destroyed: drop every reference to it now.
    del live, recorder
    gc.collect()
    return delivered
