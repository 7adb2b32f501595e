"""A rosbag2 bag played back as a camera (`camera:=bag bag:=PATH`): one the package recorded (`--record`,
record:=true) or one from a lab robot with realsense2_camera's topics, read with rosbags' AnyReader.

A bag is checked before anything starts (`bag_streams`, called by `GraphArgs` and by `start`): it must
hold one complete camera — ours (`/camera/color/image_raw`, `/camera/aligned_depth_to_color/image_raw`,
`/camera/color/camera_info`) or the driver's (`/camera/camera/…`) — with messages, colour in rgb8 or bgr8
and depth in 16UC1 millimetres (realsense2_camera's Z16; `mono16` is the same bytes); otherwise `BagError`
names what is missing or which encoding it has.

Frames are a colour image and the depth image of the same header stamp (one frameset: our perception
node and the driver with `enable_sync` stamp both alike), with the newest camera_info before them. As
the RealSense replay, frames are restamped at playback (`stamp_ns`: when read, host clock) and keep the
stamp they were recorded with (`recorded_stamp_ns`); `real_time` plays at the recorded pace, `repeat`
starts over at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_r1_ros import topics
from vla_r1_ros.cameras.base import CameraError, RgbdFrame
from vla_r1_ros.core.geometry import CameraIntrinsics

IMAGE_TYPE, INFO_TYPE = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
COLOR_ENCODINGS = ("rgb8", "bgr8")
DEPTH_ENCODINGS = ("16UC1", "mono16")  # millimetres, 0 = no depth
PENDING_STAMPS = 30  # colour or depth images waiting for their other half; older ones never get it


class BagError(CameraError):
    """The bag cannot be played as a camera: it is missing, unreadable, lacks a topic, or has an encoding
    the camera cannot take."""


def camera_topic_sets() -> dict[str, tuple[str, str, str]]:
    """(colour, aligned depth, camera info) by who publishes them: this package, realsense2_camera."""
    from vla_r1_ros.graph import realsense_driver_remappings

    ours = (topics.COLOR, topics.DEPTH, topics.CAMERA_INFO)
    driver = dict(realsense_driver_remappings())
    return {"vla_r1_ros": tuple(f"/{t}" for t in ours), "realsense2_camera": tuple(driver[t] for t in ours)}


@dataclass(frozen=True)
class BagStreams:
    """The camera a bag holds: its three topics and the encodings of its images."""

    color: str
    depth: str
    info: str
    color_encoding: str
    depth_encoding: str


def _bag_folder(path: str | Path) -> Path:
    """A rosbag2 bag is a folder (metadata.yaml beside its storage files); its .mcap names it too."""
    path = Path(path)
    return path.parent if path.suffix == ".mcap" else path


def _open(path: str | Path):
    from rosbags.highlevel import AnyReader, AnyReaderError

    folder = _bag_folder(path)
    if not (folder / "metadata.yaml").is_file():
        raise BagError(f"no rosbag2 bag at {folder} (a folder with metadata.yaml)")
    reader = AnyReader([folder])
    try:
        reader.open()
    except (AnyReaderError, OSError) as exc:
        raise BagError(f"cannot read the bag {folder}: {exc}") from None
    return reader


def _first(reader, connection) -> Any:
    for _connection, _stamp, raw in reader.messages(connections=[connection]):
        return reader.deserialize(raw, connection.msgtype)
    return None


def _streams(reader) -> BagStreams:
    recorded = {c.topic: c for c in reader.connections if c.msgcount}
    wanted_types = (IMAGE_TYPE, IMAGE_TYPE, INFO_TYPE)
    lacking: dict[str, list[str]] = {}
    for publisher, names in camera_topic_sets().items():
        lacking[publisher] = [
            f"{name} ({msgtype})"
            for name, msgtype in zip(names, wanted_types, strict=True)
            if name not in recorded or recorded[name].msgtype != msgtype
        ]
        if lacking[publisher]:
            continue
        color, depth, _info = (recorded[name] for name in names)
        encodings = []
        for connection, allowed, what in ((color, COLOR_ENCODINGS, "colour"), (depth, DEPTH_ENCODINGS, "depth")):
            encoding = _first(reader, connection).encoding
            if encoding not in allowed:
                raise BagError(
                    f"{what} {connection.topic} has encoding {encoding!r}; the camera takes {', '.join(allowed)}"
                )
            encodings.append(encoding)
        return BagStreams(*names, *encodings)
    closest = min(lacking.values(), key=len)
    others = [", ".join(missing) for missing in lacking.values() if missing is not closest]
    raise BagError(
        f"no camera a trial can use: missing {', '.join(closest)}"
        + "".join(f" (or, with the other topic names, {other})" for other in others)
    )


def bag_streams(path: str | Path) -> BagStreams:
    """The camera in the bag at `path` (its folder or its .mcap); BagError naming what is missing."""
    reader = _open(path)
    try:
        return _streams(reader)
    finally:
        reader.close()


def _image(msg) -> np.ndarray:
    """A sensor_msgs/Image of a checked encoding as an array ((H, W, 3) uint8 RGB or (H, W) uint16),
    honouring `step` padding and the byte order."""
    channels, dtype = (3, np.uint8) if msg.encoding in COLOR_ENCODINGS else (1, np.dtype(np.uint16))
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * dtype.itemsize
    pixels = rows[:, :row_bytes].copy().view(dtype).reshape(msg.height, msg.width, channels)
    if msg.encoding == "bgr8":
        pixels = pixels[..., ::-1]
    return np.ascontiguousarray(pixels if channels == 3 else pixels[..., 0].astype(np.uint16))


def _stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


class BagCamera:
    """Plays the bag at `path`; at its end `read` returns None and `finished` is true (unless `repeat`)."""

    name = "bag"

    def __init__(self, path: str | Path, repeat: bool = False, real_time: bool = False) -> None:
        self.path = Path(path)
        self.repeat = repeat
        self.real_time = real_time
        self.finished = False
        self._reader = None
        self._messages: Iterator | None = None
        self._sequence = 0

    def start(self) -> None:
        reader = _open(self.path)
        try:
            self.streams = _streams(reader)
        except BagError:
            reader.close()
            raise
        self._reader = reader
        self._rewind()
        self.finished = False

    def _rewind(self) -> None:
        wanted = {self.streams.color, self.streams.depth, self.streams.info}
        connections = [c for c in self._reader.connections if c.topic in wanted]
        self._messages = self._reader.messages(connections=connections)
        self._colors: dict[int, Any] = {}
        self._depths: dict[int, Any] = {}
        self._info = None
        self._pace: tuple[int, float] | None = None  # (first recorded stamp, monotonic time it was played)

    def read(self, timeout_s: float) -> RgbdFrame | None:
        if self._reader is None:
            if self.finished:
                return None
            raise CameraError("BagCamera.read before start()")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pair = self._next_pair()
            if pair is None:
                if not self.repeat:
                    self.finished = True
                    self.stop()
                    return None
                self._rewind()
                continue
            color, depth = pair
            stamp_ns = _stamp_ns(color)
            if self.real_time:
                self._wait_for(stamp_ns)
            self._sequence += 1
            return RgbdFrame(
                color=_image(color),
                depth_mm=_image(depth),
                intrinsics=CameraIntrinsics.from_k(self._info.width, self._info.height, self._info.k),
                stamp_ns=time.time_ns(),
                frame_id=color.header.frame_id,
                sequence=self._sequence,
                recorded_stamp_ns=stamp_ns,
            )
        return None

    def _wait_for(self, stamp_ns: int) -> None:
        """Sleep until the frame's recorded time has come, counted from the first frame played."""
        if self._pace is None or stamp_ns < self._pace[0]:
            self._pace = (stamp_ns, time.monotonic())
        due = self._pace[1] + (stamp_ns - self._pace[0]) / 1e9
        time.sleep(max(0.0, due - time.monotonic()))

    def _next_pair(self) -> tuple[Any, Any] | None:
        """The next colour and depth image of one stamp, with camera info seen before; None at the end."""
        for connection, _stamp, raw in self._messages:
            msg = self._reader.deserialize(raw, connection.msgtype)
            if connection.topic == self.streams.info:
                self._info = msg
                continue
            own, other = (
                (self._colors, self._depths) if connection.topic == self.streams.color else (self._depths, self._colors)
            )
            stamp_ns = _stamp_ns(msg)
            if stamp_ns in other and self._info is not None:
                match = other.pop(stamp_ns)
                for older in [s for s in other if s < stamp_ns]:
                    del other[older]
                return (msg, match) if own is self._colors else (match, msg)
            own[stamp_ns] = msg
            if len(own) > PENDING_STAMPS:
                del own[min(own)]
        return None

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
