"""A RealSense recording played back as a camera, through the same frame processing as the live camera.

Recordings come from `rs.recorder` (librealsense 2.59 writes rosbag2 `.db3`) or older `.bag` files,
including the RealSense Viewer's. By default playback is paced by the reader, not the clock: every
recorded frame is delivered however slow the consumer (a loaded machine dropped half of them in real
time); `real_time=True` plays at the recorded pace, dropping what the reader misses, as a live camera
would. The post filters run on replay too, so a recording made with filters off can be replayed with
any filter setting.

Frames are restamped at playback: `stamp_ns` is when the frame was read (host clock, as a live
camera's), so a trial started now takes the frames played after it, and a looped recording never goes
back in time; the stamp the frame was recorded with is kept in `recorded_stamp_ns`. Frame numbers
are the recorded ones.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyrealsense2 as rs

from vla_r1_ros.cameras.base import CameraError, RgbdFrame
from vla_r1_ros.cameras.realsense import DEFAULT_FRAME_ID, DepthFilters, RealSenseStream


class ReplayCamera:
    """Plays `path`; at its end `read` returns None and `finished` is true (unless `repeat` loops it)."""

    name = "replay"

    def __init__(
        self,
        path: str | Path,
        repeat: bool = False,
        real_time: bool = False,
        filters: DepthFilters | None = None,
        frame_id: str = DEFAULT_FRAME_ID,
    ) -> None:
        self.path = Path(path)
        self.repeat = repeat
        self.real_time = real_time
        self.filters = filters or DepthFilters()
        self.frame_id = frame_id
        self.finished = False
        self._stream: RealSenseStream | None = None

    def start(self) -> None:
        if not self.path.is_file():
            raise CameraError(f"RealSense recording not found: {self.path}")
        config = rs.config()
        # The streams are the recorded ones; enabling none selects them all.
        config.enable_device_from_file(str(self.path), repeat_playback=self.repeat)
        self._stream = RealSenseStream(rs.context(), config, self.filters, self.frame_id, device=None)
        self._stream.device.as_playback().set_real_time(self.real_time)
        self.finished = False

    def read(self, timeout_s: float) -> RgbdFrame | None:
        if self._stream is None:
            if self.finished:
                return None
            raise CameraError("ReplayCamera.read before start()")
        frame = self._stream.read(time.monotonic() + timeout_s)
        if frame is not None:
            frame.recorded_stamp_ns, frame.stamp_ns = frame.stamp_ns, time.time_ns()
            return frame
        if self.repeat:
            # librealsense's looping playback can stall where it starts over (at the reader's pace it gave
            # no frame for 25 s after its second pass), or report `stopped` for a moment there: a loop that
            # gives nothing within the timeout is started over here.
            self.stop()
            self.start()
        elif self._stream.device.as_playback().current_status() == rs.playback_status.stopped:
            self.finished = True
            self.stop()
        return None

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None
