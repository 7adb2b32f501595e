"""Intel RealSense RGB-D source: pyrealsense2 pipeline, post filters, depth aligned to colour.

One code path for every RealSense-shaped device: `RealSenseStream` starts a pipeline on whatever
device it is given (a USB camera, a `rs.software_device` in tests, a recording played back by
`ReplayCamera`) and turns its framesets into `RgbdFrame`s: depth post filters (in the depth sensor's
own pixel grid, where they were designed to run), `rs.align(rs.stream.color)`, depth in uint16
millimetres from the device's depth scale, colour intrinsics from the stream profile, device stamps.

`RealSenseCamera` adds device selection (serial number), a clear error when the device is missing,
and a `CameraError` when it is unplugged or its stream stalls (the caller restarts it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyrealsense2 as rs

from vla_r1_ros.cameras.base import CameraError, RgbdFrame
from vla_r1_ros.core.geometry import CameraIntrinsics

log = logging.getLogger(__name__)

DEFAULT_FRAME_ID = "camera_color_optical_frame"

# Timestamp domains that already are host (Unix epoch) time: the device clock translated to the host
# clock by librealsense (global time, the default on D400 cameras), or the host's arrival time.
_HOST_TIME_DOMAINS = (rs.timestamp_domain.global_time, rs.timestamp_domain.system_time)


@dataclass(frozen=True)
class DepthFilters:
    """Which librealsense depth post filters run (in this order, before alignment)."""

    spatial: bool = True  # edge-preserving smoothing within a frame
    temporal: bool = True  # smoothing over frames; fills short dropouts from history
    hole_filling: bool = False  # invents depth in holes from neighbours: off, so lifting sees missing depth

    def build(self) -> list[rs.filter]:
        chosen = (
            (self.spatial, rs.spatial_filter),
            (self.temporal, rs.temporal_filter),
            (self.hole_filling, rs.hole_filling_filter),
        )
        return [make() for enabled, make in chosen if enabled]


def _info(device: rs.device, field: rs.camera_info) -> str:
    return device.get_info(field) if device.supports(field) else "?"


def describe_devices(context: rs.context) -> str:
    """The connected RealSense devices, one per line, for error messages."""
    lines = [
        f"  {_info(d, rs.camera_info.name)} (serial {_info(d, rs.camera_info.serial_number)}, "
        f"firmware {_info(d, rs.camera_info.firmware_version)}, USB {_info(d, rs.camera_info.usb_type_descriptor)})"
        for d in context.query_devices()
    ]
    return "\n".join(lines) if lines else "  none"


def _depth_scale_m(device: rs.device) -> float:
    """Metres per z16 count. Looked up by option: recorders and playback devices wrap their sensors
    without the depth-sensor type that `first_depth_sensor` needs."""
    for sensor in device.query_sensors():
        if sensor.supports(rs.option.depth_units):
            return sensor.get_option(rs.option.depth_units)
    raise CameraError(f"{device} has no sensor with a depth scale (depth_units option)")


class FrameProcessor:
    """Frameset -> RgbdFrame for one started pipeline (the filters keep per-stream history)."""

    def __init__(self, profile: rs.pipeline_profile, filters: DepthFilters, frame_id: str) -> None:
        color = profile.get_stream(rs.stream.color).as_video_stream_profile()
        k = color.get_intrinsics()
        self.intrinsics = CameraIntrinsics(k.width, k.height, k.fx, k.fy, k.ppx, k.ppy)
        self.frame_id = frame_id
        # z16 counts -> millimetres. D400 cameras default to 1 mm units, a D405 to 0.1 mm.
        self._mm_per_unit = _depth_scale_m(profile.get_device()) * 1000.0
        self._filters = filters.build()
        self._align = rs.align(rs.stream.color)
        # The syncer may pair a depth frame with the previous colour frame when one arrives late;
        # such a pair would put depth from another instant under the colour pixels.
        self._max_skew_ms = 0.5 * 1000.0 / color.fps()
        self._host_minus_device_ns: int | None = None
        self._last_color_number: int | None = None

    def process(self, frames: rs.composite_frame) -> RgbdFrame | None:
        """None when the frameset lacks a stream, pairs frames from different instants, or repeats the
        colour frame of the one before (the syncer hands a colour frame out again when the other
        stream's next frame comes late: seen in playback on a loaded machine)."""
        depth, color = frames.get_depth_frame(), frames.get_color_frame()
        if not depth or not color or abs(depth.get_timestamp() - color.get_timestamp()) > self._max_skew_ms:
            log.debug("skipping an unsynchronised frameset")
            return None
        if color.get_frame_number() == self._last_color_number:
            log.debug("skipping a repeated colour frame")
            return None
        self._last_color_number = color.get_frame_number()
        for block in self._filters:
            frames = block.process(frames).as_frameset()
        aligned = self._align.process(frames)
        # Copies: the frames' buffers go back to librealsense's pool when the frames are released.
        color_pixels = np.asanyarray(aligned.get_color_frame().get_data()).copy()
        raw_depth = np.asanyarray(aligned.get_depth_frame().get_data())
        if abs(self._mm_per_unit - 1.0) < 1e-6:  # depth_units is a float32 option: 0.001 reads as 0.00100000005
            depth_mm = raw_depth.copy()
        else:
            depth_mm = np.clip(np.rint(raw_depth * self._mm_per_unit), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        return RgbdFrame(
            color=color_pixels,
            depth_mm=depth_mm,
            intrinsics=self.intrinsics,
            stamp_ns=self._stamp_ns(color),
            frame_id=self.frame_id,
            sequence=int(color.get_frame_number()),
        )

    def _stamp_ns(self, frame: rs.frame) -> int:
        device_ns = round(frame.get_timestamp() * 1e6)  # librealsense timestamps are milliseconds
        if frame.get_frame_timestamp_domain() in _HOST_TIME_DOMAINS:
            return device_ns
        # Hardware clock: the device's own epoch. Anchor it to the host clock at the first frame (as
        # realsense2_camera does), so stamps are comparable with ROS time and keep the device's spacing.
        if self._host_minus_device_ns is None:
            self._host_minus_device_ns = time.time_ns() - device_ns
        return device_ns + self._host_minus_device_ns


class RealSenseStream:
    """A started pipeline plus the processing of its framesets; shared by the live camera and replay."""

    def __init__(
        self, context: rs.context, config: rs.config, filters: DepthFilters, frame_id: str, device: rs.device | None
    ) -> None:
        self.pipeline = rs.pipeline(context)
        if device is not None:
            self.pipeline.set_device(device)
        try:
            self.profile = self.pipeline.start(config)
        except RuntimeError as exc:
            raise CameraError(f"RealSense pipeline did not start: {exc}") from exc
        try:
            self.processor = FrameProcessor(self.profile, filters, frame_id)
        except CameraError:
            self.pipeline.stop()
            raise

    def read(self, deadline: float) -> RgbdFrame | None:
        """The next usable frame, or None when `deadline` (time.monotonic) passes first."""
        while (remaining_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            ok, frames = self.pipeline.try_wait_for_frames(remaining_ms)
            if not ok:
                return None
            frame = self.processor.process(frames)
            if frame is not None:
                return frame
        return None

    @property
    def device(self) -> rs.device:
        return self.profile.get_device()

    def stop(self) -> None:
        self.pipeline.stop()


class RealSenseCamera:
    """A RealSense camera (D400 family): colour rgb8 and depth z16 at one size and rate.

    An unplugged camera (librealsense reports it disconnected) or a stalled stream (no frame for
    `stall_timeout_s`, the usual USB failure) makes `read` raise `CameraError`; `stop()` then `start()`
    opens the camera again, found anew (a replugged camera is a new device). The perception node does
    that with backoff (`cameras.restarts`).

    `find_device` returns the device to open at each start instead of the context's camera with
    `serial` (a `rs.software_device`, a `rs.recorder` wrapping a device); `context` injects the device
    list used for lookup and error messages.
    """

    name = "realsense"

    def __init__(
        self,
        serial: str = "",
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        filters: DepthFilters | None = None,
        frame_id: str = DEFAULT_FRAME_ID,
        stall_timeout_s: float = 2.0,
        context: rs.context | None = None,
        find_device: Callable[[], rs.device] | None = None,
    ) -> None:
        self.serial = serial
        self.width, self.height, self.fps = width, height, fps
        self.filters = filters or DepthFilters()
        self.frame_id = frame_id
        self.stall_timeout_s = stall_timeout_s
        self._context = context
        self._find_device = find_device
        self._stream: RealSenseStream | None = None
        self._last_frame_at = 0.0

    def start(self) -> None:
        self._context = self._context or rs.context()
        self._stream = self._open()
        self._last_frame_at = time.monotonic()

    def read(self, timeout_s: float) -> RgbdFrame | None:
        if self._stream is None:
            raise CameraError("RealSenseCamera.read before start()")
        frame = self._stream.read(time.monotonic() + timeout_s)
        now = time.monotonic()
        if frame is not None:
            self._last_frame_at = now
            return frame
        camera = f"RealSense {self.serial}" if self.serial else "RealSense camera"
        if not self._stream.device.is_connected():
            raise CameraError(f"{camera} disconnected")
        if now - self._last_frame_at > self.stall_timeout_s:
            raise CameraError(f"{camera} stalled: no frame for {now - self._last_frame_at:.1f} s")
        return None

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None

    def _open(self) -> RealSenseStream:
        config = rs.config()
        device = None
        if self._find_device is not None:
            device = self._find_device()
        else:
            self._require_device()
            if self.serial:
                config.enable_device(self.serial)
        config.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        try:
            return RealSenseStream(self._context, config, self.filters, self.frame_id, device)
        except CameraError as exc:
            mode = f"colour rgb8 and depth z16 at {self.width}x{self.height}, {self.fps} fps"
            raise CameraError(f"{exc} (requested {mode})") from exc

    def _require_device(self) -> None:
        serials = [d.get_info(rs.camera_info.serial_number) for d in self._context.query_devices()]
        if (self.serial and self.serial not in serials) or not serials:
            wanted = f"with serial {self.serial} " if self.serial else ""
            raise CameraError(
                f"no RealSense device {wanted}found; connected devices:\n{describe_devices(self._context)}"
            )
