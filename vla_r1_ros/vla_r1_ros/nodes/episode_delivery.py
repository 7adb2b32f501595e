"""The planning node's side of the episode log: every finished trial's record reaches the reward logger
at least once, and `planning/status` says what keeps trials from starting or records from the log.

Each record goes into an `Outbox` (`core.delivery`) and is delivered through the `vla_r1/log_episode`
service (the logger answers once the episode is durably on disk); what is not confirmed is retried
every `log_retry_period_s`, in order. With `spool_dir` each record is also on disk (CDR, as DDS carries
it) until the logger confirms it: a planning process that dies is respawned and delivers those first.
A trial must not start while its record would have nowhere to go (`refusal_reason`: no logger with
`require_logger`, or `max_undelivered` records waiting).
`planning/status` (JSON, latched; published when it changes) carries that refusal, how many records
wait and the logger's last answer about them, so that a run of trials can pause and tell its operator
the cause (`core.run_holds`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import String
from vla_r1_interfaces.msg import EpisodeRecord
from vla_r1_interfaces.srv import LogEpisode

from vla_r1_ros import topics
from vla_r1_ros.core.delivery import DeliveryResult, Outbox, Spool
from vla_r1_ros.nodes.goals import wait_future

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


class EpisodeDelivery:
    def __init__(self, node: Node, params: Mapping[str, Any], group: CallbackGroup) -> None:
        """`params`: the planning node's `log_timeout_s`, `log_retry_period_s`, `max_undelivered`,
        `require_logger`, `spool_dir` ("": records wait in memory only). Raises EpisodeStoreError when the
        spool cannot be opened (another planning process uses it, the folder cannot be created)."""
        self._node = node
        self._log_timeout_s = float(params["log_timeout_s"])
        self._max_undelivered = int(params["max_undelivered"])
        self._require_logger = bool(params["require_logger"])
        spool_dir = str(params["spool_dir"])
        self.spool = (
            Spool(spool_dir, serialize_message, lambda data: deserialize_message(data, EpisodeRecord))
            if spool_dir
            else None
        )
        self.outbox = Outbox(self._deliver, spool=self.spool)
        restored, damaged = self.outbox.restore()
        if restored:
            node.get_logger().warning(
                f"{len(restored)} finished trials spooled by an earlier planning process are delivered first: "
                + ", ".join(restored)
            )
        for problem in damaged:
            node.get_logger().error(f"unreadable record in the spool {spool_dir}, set aside: {problem}")
        self.log_client = node.create_client(LogEpisode, topics.LOG_EPISODE, callback_group=group)
        self._status_pub = node.create_publisher(String, topics.PLANNING_STATUS, LATCHED)
        self._status = ""
        self._status_lock = threading.Lock()  # one status at a time: an older one never overwrites a newer
        self.publish_status()
        node.create_timer(float(params["log_retry_period_s"]), self._retry_and_report, callback_group=group)

    def log(self, trial_id: str, record: EpisodeRecord) -> str:
        """Queue a trial's record and try to deliver it: '' when it is on disk, else why it is not yet."""
        self.outbox.put(trial_id, record)
        tried = self._flush()
        not_logged = ""
        if trial_id in tried and tried[trial_id].refused:
            not_logged = tried[trial_id].detail  # never: the run names it among the trials missing from the log
        elif trial_id in self.outbox.pending_keys():
            reason = tried[trial_id].detail if trial_id in tried else self.outbox.last_error
            not_logged = reason or "waiting for earlier trials to be logged"
        self.publish_status()
        return not_logged

    def refusal_reason(self) -> str:
        """Why a trial must not start now ("" when it may): its record would have nowhere to go."""
        if self._require_logger and not self.log_client.service_is_ready():
            return f"no reward logger on {topics.LOG_EPISODE}: the trial could not be logged"
        waiting = len(self.outbox)
        if waiting >= self._max_undelivered:
            oldest = self.outbox.oldest_age_s()  # how long the log has been failing, for the operator
            return (
                f"{waiting} finished trials wait to be logged, the oldest for {oldest:.0f} s ({self.outbox.last_error})"
            )
        return ""

    def publish_status(self, refusal: str | None = None) -> None:
        """`planning/status`, when it changed: why goals are refused ("" when they are not), how many
        finished trials wait to be logged and the logger's last answer about them."""
        with self._status_lock:
            waiting = len(self.outbox)
            status = json.dumps(
                {
                    "refusal": self.refusal_reason() if refusal is None else refusal,
                    "undelivered": waiting,
                    "log_error": self.outbox.last_error if waiting else "",
                    "spool_error": self.outbox.spool_error if waiting else "",
                }
            )
            if status != self._status:
                self._status = status
                self._status_pub.publish(String(data=status))

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()

    def _flush(self) -> dict[str, DeliveryResult]:
        return self.outbox.flush() if len(self.outbox) else {}

    def _retry_and_report(self) -> None:
        self._flush()
        self.publish_status()

    def _deliver(self, trial_id: str, record: EpisodeRecord) -> DeliveryResult:
        """One LogEpisode call; the logger answers once the episode is durably on disk."""
        if not self.log_client.service_is_ready():
            return DeliveryResult(False, f"no reward logger on {topics.LOG_EPISODE}")
        future = self.log_client.call_async(LogEpisode.Request(record=record))
        if not wait_future(future, self._log_timeout_s):
            future.cancel()
            return DeliveryResult(False, f"the reward logger did not confirm trial {trial_id} in time")
        response = future.result()
        if response.refused:
            self._node.get_logger().error(f"trial {trial_id} refused by the reward logger, dropped: {response.message}")
        elif not response.logged:
            self._node.get_logger().error(f"trial {trial_id} NOT logged yet (kept, retrying): {response.message}")
        detail = response.index_line if response.logged else response.message
        return DeliveryResult(bool(response.logged), detail, refused=bool(response.refused))
