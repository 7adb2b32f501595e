"""`reward_logger`: writes every finished trial to the episode store and announces it.

Interfaces (docs/ARCHITECTURE.md, docs/episodes.md):
- serves `vla_r1/log_episode` (LogEpisode): the EpisodeRecord carries the whole trial — frame set,
  scene, prompts, raw model text, plan, outcome — so the logger converts and writes; it subscribes to no
  camera topic and matches nothing by timestamp. It answers `logged: true` only once the episode is
  durably on disk; the store writes each trial id once, so the planning node's retries (a lost answer,
  a logger restart) log nothing twice. A write the store refuses (disk full, read-only) is answered
  `logged: false` with the reason: the planning node keeps the record and delivers it again.
- refuses (`logged: false`, "refused, nothing logged: <why>", and an error in its log) a record without
  the evidence its outcome claims (`core.outcomes.unsupported_claim`: a success or a stage after the
  policy answered without frames or a prediction, a simulator verdict without a scene, an unknown
  outcome_source or stage, a success with a failure stage, a bad trial id): anyone on the graph can
  call the service, and a forged record must not become a logged success.
- publishes `vla_r1/episode_logged` (std_msgs/String, reliable): the JSON index line of each episode.

Parameters (defaults in config/nodes.yaml `reward_logger:`): `log_dir` (runs/latest), `reference_source`
(auto | simulator | none).
Writes run in the service callback, one at a time (the store's lock), off the other callbacks' threads.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from vla_r1_interfaces.srv import LogEpisode

from vla_r1_ros import topics
from vla_r1_ros.core.episodes import (
    EpisodeIndexPending,
    EpisodeStore,
    EpisodeStoreError,
    References,
    ReferenceSource,
    select_references,
)
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.outcomes import unsupported_claim
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.episode_msgs import frame_from_msg, scene_of, trial_from_msg
from vla_r1_ros.nodes.parameters import declare_parameters
from vla_r1_ros.nodes.spin import spin_nodes

# Kept for late joiners: a logger respawned mid-run announces its first episodes before every listener
# has discovered the new publisher, and a volatile topic would drop them (the run would call logged
# trials missing). A listener asking for TRANSIENT_LOCAL gets the last 50 lines on discovery.
LOGGED_QOS = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
LOGGER_REFERENCE_SOURCES = (ReferenceSource.AUTO, ReferenceSource.SIMULATOR, ReferenceSource.NONE)


class RewardLoggerNode(Node):
    def __init__(self, context: ProcessContext, **kwargs: Any) -> None:
        super().__init__("reward_logger", **kwargs)
        params = declare_parameters(self, context.config, "reward_logger")
        self.reference_source = ReferenceSource(params["reference_source"])
        if self.reference_source not in LOGGER_REFERENCE_SOURCES:
            raise ValueError(
                f"reference_source {self.reference_source!r} is not made by the logger: one of "
                f"{', '.join(LOGGER_REFERENCE_SOURCES)} (operator references come from labels after the fact; "
                "a trial's own answer is never its reference)"
            )
        # Where the camera is (hand-eye calibration in config/camera.yaml): projects executed paths.
        self.base_T_camera = camera_extrinsics(context.config.camera)
        self.store = EpisodeStore(params["log_dir"])
        if self.store.recovered:
            self.get_logger().warning(f"re-indexed episodes left by a crash: {', '.join(self.store.recovered)}")

        self.logged_pub = self.create_publisher(String, topics.EPISODE_LOGGED, LOGGED_QOS)
        self.create_service(
            LogEpisode, topics.LOG_EPISODE, self._on_log_episode, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.get_logger().info(f"logging episodes to {self.store.root} (next {self.store.next_episode})")

    def _on_log_episode(self, request: LogEpisode.Request, response: LogEpisode.Response) -> LogEpisode.Response:
        record = request.record
        refused = unsupported_claim(
            record.trial_id,
            bool(record.success),
            record.failure_stage,
            record.outcome_source,
            has_frames=all(part.width > 0 for part in (record.color, record.depth, record.camera_info)),
            has_prediction=len(record.prediction.tasks) > 0,
            has_scene=bool(record.has_scene),
            has_after_frames=bool(record.has_after_frames)
            and all(part.width > 0 for part in (record.after_color, record.after_depth)),
        )
        if refused:  # a forged or broken record: nothing is written, and the sender is told why
            response.logged, response.refused, response.message = False, True, f"refused, nothing logged: {refused}"
            self.get_logger().error(f"record {record.trial_id[:80]!r} {response.message}")
            return response
        already = self.store.logged(record.trial_id)
        try:
            entry = already or self._write(record)
        except EpisodeIndexPending as exc:  # on disk already: the store indexes it later, never twice
            self.get_logger().error(f"trial {record.trial_id} logged, index line pending: {exc}")
            entry = self.store.logged(record.trial_id)
        except EpisodeStoreError as exc:
            self.get_logger().error(f"trial {record.trial_id} NOT logged (the planning node keeps it): {exc}")
            response.logged, response.message = False, str(exc)
            return response
        response.logged, response.episode = True, entry["episode"]
        response.index_line = json.dumps(entry)
        # Announced again for a repeated delivery: the first announcement may have died with the logger
        # that wrote the episode (kill -9 between the write and the publish). Listeners key by trial id.
        self.logged_pub.publish(String(data=response.index_line))
        if already is None:
            rewards = entry["rewards"]
            self.get_logger().info(
                f"episode {entry['episode']} ({record.trial_id}): success={entry['success']} total={rewards['total']}"
            )
        else:  # a repeated delivery (its first answer was lost): confirm, write nothing
            self.get_logger().info(f"trial {record.trial_id} was already logged as episode {entry['episode']}")
        return response

    def _write(self, record: Any) -> dict[str, Any]:
        notes: list[str] = []
        trial = trial_from_msg(record)
        frame = frame_from_msg(record, notes)
        try:
            references = select_references(
                trial,
                self.reference_source,
                scene=scene_of(record),
                intrinsics=frame.intrinsics,
                base_T_camera=self.base_T_camera,
            )
        except Exception as exc:  # a reference bug must not cost the trial: log it without references
            references = References(ReferenceSource.NONE, note=f"references failed: {type(exc).__name__}: {exc}")
        return self.store.write(trial, frame, references, notes)

    def destroy_node(self) -> None:
        self.store.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    # An unwritable log directory is fatal at start: better no logger than trials that are never logged.
    sys.exit(
        spin_nodes(lambda context: [RewardLoggerNode(context)], args, startup_errors=(EpisodeStoreError, ValueError))
    )


if __name__ == "__main__":
    main()
