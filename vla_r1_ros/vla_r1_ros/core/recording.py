"""The bag a recording writes, as rosbag2 writes it (docs/recording.md): a folder with `metadata.yaml` and one
`.mcap` whose schemas are the ROS 2 message definitions (rosbags' writer, storage MCAP, rosbag2 format 9),
so Foxglove, `ros2 bag play` and any MCAP reader open it. Messages arrive already CDR-serialised (the
recorder subscribes raw, as rosbag2 does) and are written as they came, stamped with their receive time.

`vla_r1_interfaces`' own messages are not in rosbags' Jazzy typestore: their definitions are read from
the installed package's `.msg` files, so the bag carries them too.

A write the disk refuses (full, quota, gone) stops the recording for good with `RecordingStopped`: what
was written before stays in the `.mcap` (without its summary: `mcap recover` rebuilds one), nothing is
retried, and whatever runs beside the recorder goes on.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Sequence
from pathlib import Path

from rosbags.interfaces import Qos
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

INTERFACES_PACKAGE = "vla_r1_interfaces"
BAG_FORMAT_VERSION = 9  # rosbag2's metadata version since Jazzy
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class RecordingStopped(RuntimeError):
    """The bag cannot take another message (the disk refused a write); the recording is over."""


def package_typestore() -> Typestore:
    """rosbags' ROS 2 Jazzy types plus every message of vla_r1_interfaces, from its installed `.msg` files."""
    from ament_index_python.packages import get_package_share_directory

    store = get_typestore(Stores.ROS2_JAZZY)
    msg_dir = Path(get_package_share_directory(INTERFACES_PACKAGE)) / "msg"
    types: dict = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types |= get_types_from_msg(path.read_text(), f"{INTERFACES_PACKAGE}/msg/{path.stem}")
    store.register(types)
    return store


def _write_failure(exc: OSError) -> str:
    if exc.errno in DISK_FULL_ERRNOS:
        return f"disk full ({exc.strerror})"
    return exc.strerror or str(exc)


class BagWriter:
    """One bag, written topic by topic as the recorder finds them; not thread-safe (one caller at a time)."""

    def __init__(self, bag_dir: Path, typestore: Typestore | None = None) -> None:
        """Creates `bag_dir` (which must not exist: a bag is never overwritten) and its `.mcap`."""
        self.bag_dir = bag_dir
        self.typestore = typestore or package_typestore()
        self.counts: dict[str, int] = {}
        self._connections: dict = {}
        self._writer = Writer(bag_dir, version=BAG_FORMAT_VERSION, storage_plugin=StoragePlugin.MCAP)
        try:
            self._writer.open()
        except WriterError as exc:
            raise RecordingStopped(f"cannot create the bag {bag_dir}: {exc}") from None
        except OSError as exc:
            raise RecordingStopped(f"cannot create the bag {bag_dir}: {_write_failure(exc)}") from None

    def add_topic(self, topic: str, msgtype: str, offered_qos: Sequence[Qos] = ()) -> None:
        """KeyError for a message type whose definition is unknown (neither Jazzy's nor vla_r1_interfaces')."""
        if self._writer is None:
            raise RecordingStopped(f"the bag {self.bag_dir} is closed")
        if msgtype not in self.typestore.fielddefs:
            raise KeyError(f"{topic}: no definition of {msgtype} to record it with")
        self._connections[topic] = self._guarded(
            self._writer.add_connection,
            topic,
            msgtype,
            typestore=self.typestore,
            serialization_format="cdr",
            offered_qos_profiles=list(offered_qos),
        )
        self.counts[topic] = 0

    def write(self, topic: str, stamp_ns: int, data: bytes) -> None:
        """One serialised message of an added topic; RecordingStopped when the disk refuses it."""
        if self._writer is None:
            raise RecordingStopped(f"the bag {self.bag_dir} is closed")
        self._guarded(self._writer.write, self._connections[topic], stamp_ns, data)
        self.counts[topic] += 1

    def _guarded(self, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except OSError as exc:
            self.abort()
            raise RecordingStopped(f"writing the bag {self.bag_dir} failed: {_write_failure(exc)}") from None

    def close(self) -> None:
        """Write the `.mcap`'s summary and `metadata.yaml`: the bag is complete."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.close()
        except OSError as exc:
            writer.abort()
            raise RecordingStopped(f"closing the bag {self.bag_dir} failed: {_write_failure(exc)}") from None

    def abort(self) -> None:
        """Stop without a summary (what could be written stays in the `.mcap`)."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        # The file is closed as far as it can be; a full disk refuses even the buffered rest.
        with contextlib.suppress(OSError):
            writer.abort()
