"""The camera-source interface: anything that yields aligned RGB-D frames with intrinsics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vla_r1_ros.core.geometry import CameraIntrinsics


class CameraError(RuntimeError):
    """The camera cannot deliver frames (no device, unplugged, end of recording, bad configuration)."""


@dataclass
class RgbdFrame:
    """One colour frame with depth aligned to it (same size, same pixel grid)."""

    color: np.ndarray  # (H, W, 3) uint8 RGB
    depth_mm: np.ndarray  # (H, W) uint16 millimetres, 0 = no depth
    intrinsics: CameraIntrinsics  # of the colour stream (depth is aligned to it)
    stamp_ns: int  # capture time, nanoseconds, host clock (for a replay: when the frame was played)
    frame_id: str = "camera_color_optical_frame"
    sequence: int = 0  # source frame counter: a jump > 1 means frames were dropped at the source
    recorded_stamp_ns: int | None = None  # replay: the stamp the frame was recorded with
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. the simulator's ground-truth Scene


class CameraSource(Protocol):
    """A camera. `read` blocks for at most `timeout_s` and returns None when no new frame came.

    `read` raises (`CameraError`, or whatever a broken source raises) when the source is dead; then
    `stop()` followed by `start()` starts it again. `stop()` may be called on a stopped source.
    """

    name: str

    def start(self) -> None: ...

    def read(self, timeout_s: float) -> RgbdFrame | None: ...

    def stop(self) -> None: ...
