"""recorder: the graph's topics into a rosbag2 bag (MCAP), in place of `ros2 bag record -s mcap` where
rosbag2 cannot be installed (`vla-r1 demo --record`, `vla-r1 trials --record`; docs/recording.md).

It does what rosbag2's recorder does: each topic of `topics` is subscribed once a publisher offers it
(looked for every `discovery_period_s`), with the message type the graph reports and a QoS the
publishers can all serve (reliable / transient local only when every publisher offers it), as
serialised bytes (`raw`: no message is deserialised), and written with its receive time; the bag's
`metadata.yaml` and the `.mcap`'s summary are written when the node is destroyed (`core.recording`).

A write the disk refuses stops the recording, not the graph: the node logs it, says so on
`recorder/status` (JSON, latched: `state` recording | stopped, `bag`, `messages` per topic, `waiting_for`
topics without a publisher yet, `error`), takes no more messages, and with `exit_when_stopped` (its own
process) ends the process cleanly a moment later, so the status is delivered first.

Parameters: config/nodes.yaml `recorder:` has each one's default and meaning.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from functools import partial
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from std_msgs.msg import String

from vla_r1_ros import topics
from vla_r1_ros.core.recording import BagWriter, RecordingStopped
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.parameters import declare_parameters
from vla_r1_ros.nodes.spin import spin_nodes

RECORDING, STOPPED = "recording", "stopped"
STATUS_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
# What a subscriber keeps while the writer is busy: the camera's own keep-last (5) and then some.
RECORD_DEPTH = 10
EXIT_DELAY_S = 1.0  # after stopping: time for recorder/status to reach its subscribers before the process ends


def _duration(value) -> QosTime:
    return QosTime(int(value.nanoseconds // 1_000_000_000), int(value.nanoseconds % 1_000_000_000))


def offered_qos(profile: QoSProfile) -> Qos:
    """A publisher's QoS as rosbag2 stores it in a bag (`offered_qos_profiles`), in rosbags' terms."""
    return Qos(
        QosHistory[profile.history.name],
        profile.depth,
        QosReliability[profile.reliability.name],
        QosDurability[profile.durability.name],
        _duration(profile.deadline),
        _duration(profile.lifespan),
        QosLiveliness[profile.liveliness.name],
        _duration(profile.liveliness_lease_duration),
        profile.avoid_ros_namespace_conventions,
    )


def recording_qos(offered: list[QoSProfile]) -> QoSProfile:
    """rosbag2's adaptive rule: ask only what every publisher offers, so none is left unmatched."""
    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in offered)
    latched = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max([RECORD_DEPTH, *(p.depth for p in offered if latched)]),  # a latched history is taken whole
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def message_class(type_name: str) -> type:
    """`pkg/msg/Type` -> the message class (rosidl's generated Python module)."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class RecorderNode(Node):
    def __init__(self, context: ProcessContext, exit_when_stopped: bool = False, **node_kwargs) -> None:
        """RecordingStopped when the bag cannot be created (an existing folder, an unwritable disk)."""
        super().__init__("recorder", **node_kwargs)
        p = declare_parameters(self, context.config, "recorder")
        if not p["bag_dir"]:
            raise ValueError("recorder: bag_dir is empty (the graph names it with record:=true)")
        self._wanted = [self.resolve_topic_name(topic) for topic in p["topics"] if topic]
        self._exit_when_stopped = exit_when_stopped
        self._lock = threading.Lock()  # the bag takes one message at a time; callbacks run on several threads
        self._bag = BagWriter(Path(p["bag_dir"]))
        self._subscriptions_by_topic: dict[str, object] = {}
        self._error = ""
        self._ready = False
        self._status_pub = self.create_publisher(String, topics.RECORDER_STATUS, STATUS_QOS)
        self._discovery = self.create_timer(float(p["discovery_period_s"]), self._subscribe_offered)
        self.create_timer(float(p["status_period_s"]), self._report)
        self._subscribe_offered()
        self.get_logger().info(f"recording {len(self._wanted)} topics into {self._bag.bag_dir}")

    @property
    def stopped(self) -> bool:
        return bool(self._error)

    def _subscribe_offered(self) -> None:
        for topic in self._wanted:
            if topic in self._subscriptions_by_topic or self.stopped:
                continue
            offered = self.get_publishers_info_by_topic(topic)
            types = sorted({info.topic_type for info in offered})
            if len(types) != 1:
                if len(types) > 1:
                    self.get_logger().warning(f"{topic} is published with several types {types}: not recorded")
                continue
            with self._lock:
                try:
                    self._bag.add_topic(topic, types[0], [offered_qos(info.qos_profile) for info in offered])
                except KeyError as exc:
                    self.get_logger().error(f"{exc.args[0]}: not recorded")
                    self._subscriptions_by_topic[topic] = None
                    continue
                except RecordingStopped as exc:
                    self._stop(str(exc))
                    return
            qos = recording_qos([info.qos_profile for info in offered])
            self._subscriptions_by_topic[topic] = self.create_subscription(
                message_class(types[0]), topic, partial(self._on_message, topic), qos, raw=True
            )
        ready = self.status()["ready"]
        if ready != self._ready:  # said at once: a run waits for it before its first trial
            self._ready = ready
            self._report()

    def _on_message(self, topic: str, data: bytes, info: dict) -> None:
        # rosbag2 stamps with the receive time too: the middleware's, taken when the sample arrived, not
        # when a worker thread got to it (behind a backlog of images a trial's answer would land late,
        # in the next trial's span).
        received_ns = int(info.get("received_timestamp") or 0) or time.time_ns()
        with self._lock:
            if self.stopped:
                return
            try:
                self._bag.write(topic, received_ns, data)
            except RecordingStopped as exc:
                self._stop(str(exc))

    def _stop(self, error: str) -> None:
        """The recording is over (called with the lock held); the rest of the graph goes on."""
        self._error = error
        self.get_logger().error(f"recording stopped: {error}; the graph goes on without it")
        self._report()
        if self._exit_when_stopped:
            self.create_timer(EXIT_DELAY_S, lambda: rclpy.try_shutdown(context=self.context))

    def status(self) -> dict:
        """`unmatched`: topics subscribed whose publishers DDS has not matched to the subscription yet (what
        they publish now is not recorded); `ready` once every topic is subscribed and matched."""
        subscribed = self._subscriptions_by_topic
        waiting = [topic for topic in self._wanted if topic not in subscribed]
        unmatched = [topic for topic, sub in subscribed.items() if sub is not None and sub.get_publisher_count() == 0]
        return {
            "state": STOPPED if self.stopped else RECORDING,
            "bag": str(self._bag.bag_dir),
            "messages": dict(self._bag.counts),
            "waiting_for": waiting,
            "unmatched": unmatched,
            "ready": not self.stopped and not waiting and not unmatched,
            "error": self._error,
        }

    def _report(self) -> None:
        self._status_pub.publish(String(data=json.dumps(self.status())))

    def destroy_node(self) -> None:
        # Not the node's logger: at Ctrl-C the context is already shut down and /rosout cannot take it.
        logger = rclpy.logging.get_logger(self.get_name())
        with self._lock:
            try:
                self._bag.close()
            except RecordingStopped as exc:
                logger.error(str(exc))
            else:
                if not self.stopped:
                    logger.info(f"bag complete: {self._bag.bag_dir} ({sum(self._bag.counts.values())} messages)")
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    # A bag that cannot even be created is fatal at start (exit 1); one that fills up later ends cleanly (0).
    sys.exit(
        spin_nodes(
            lambda context: [RecorderNode(context, exit_when_stopped=True)],
            args,
            startup_errors=(RecordingStopped, ValueError),
        )
    )


if __name__ == "__main__":
    main()
