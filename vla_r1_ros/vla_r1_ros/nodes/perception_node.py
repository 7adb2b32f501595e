"""perception: publishes a camera source as realsense2_camera does (colour, aligned depth, camera info).

A capture thread reads the source (reads block; the executor never waits on the camera) and publishes
each frame's colour, aligned depth and camera info with one stamp and the colour optical frame id.
Images are reliable with keep-last-5 history (as realsense2_camera): the publisher keeps only the newest
frames, so a slow subscriber skips frames instead of slowing it, and subscribers that need every byte of
the frame they get (inference, reward logger) are not cut short by a lost UDP fragment. Frame quality
(stale, dropped, timed-out frames; the publish rate) is counted by `cameras.frame_stats`, logged, and
published as JSON on `perception/status`.

A source that raises is stopped and started again with exponential backoff (`cameras.restarts`:
`restart_delay_s` doubling to `restart_max_delay_s`), for as long as the node runs; the state, the
restart count and the last error are in `perception/status`, and each failure is logged with its cause.
A replayed frame (a RealSense recording, a bag) is stamped with its playback time by the source; its
recorded stamp goes out on `camera/recorded_stamp` (sensor_msgs/TimeReference) with the frame's stamp,
as one more stream of the frame set.

Parameters: config/nodes.yaml `perception:` has each one's default and meaning; `width` and `height` default
to config/camera.yaml's image size.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, TimeReference
from std_msgs.msg import String
from vla_r1_interfaces.msg import SceneState

from vla_r1_ros import topics
from vla_r1_ros.cameras import REPLAYED_SOURCES, make_camera
from vla_r1_ros.cameras.base import CameraError, CameraSource, RgbdFrame
from vla_r1_ros.cameras.frame_stats import FrameStats, RateLimiter
from vla_r1_ros.cameras.restarts import RESTARTING, STREAMING, Backoff, SourceRestarts
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import camera_info_msg, ns_to_stamp, numpy_to_image
from vla_r1_ros.nodes.parameters import declare_parameters

COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC = topics.COLOR, topics.DEPTH, topics.CAMERA_INFO
SCENE_TOPIC, STATUS_TOPIC, RECORDED_STAMP_TOPIC = topics.SCENE, topics.PERCEPTION_STATUS, topics.RECORDED_STAMP

# Reliable, keep last 5: a reliable reader a few frames behind (the logger writing an episode) still gets the
# frame a trial used; keep-last never blocks the publisher.
FRAME_QOS = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


def extra_parameters(config: PackageConfig) -> dict[str, Any]:
    """The parameters whose defaults config/camera.yaml gives (the rest are in config/nodes.yaml): the image
    size, which the intrinsics are for."""
    image = config.camera["image"]
    return {"width": int(image["width"]), "height": int(image["height"])}


class PerceptionNode(Node):
    def __init__(self, context: ProcessContext, source: CameraSource | None = None, **node_kwargs) -> None:
        """`source` replaces the one the `source` parameter names (tests, tools)."""
        super().__init__("perception", **node_kwargs)
        camera = context.config.camera
        self._frame_id = camera["frames"]["camera_optical"]
        self._base_frame = camera["frames"]["base"]  # ground truth poses are in the robot base frame
        p = declare_parameters(self, context.config, "perception", extra=extra_parameters(context.config))
        self._source = source or make_camera(p["source"], {**p, "frame_id": self._frame_id}, context.workcell)
        self._limiter = RateLimiter(float(p["rate_hz"]))
        self._read_timeout_s = float(p["read_timeout_s"])
        self._stats = FrameStats(float(p["max_frame_age_s"]))
        try:
            backoff = Backoff(float(p["restart_delay_s"]), float(p["restart_max_delay_s"]))
        except ValueError as exc:
            raise ValueError(f"perception parameters restart_delay_s / restart_max_delay_s: {exc}") from exc
        self._restarts = SourceRestarts(backoff)
        # Cameras stream and are read frame by frame (the temporal filter and drop counting need every
        # frame). The simulator renders on each read, holding the workcell's lock: read it only when a
        # frame is due.
        self._read_when_due = self._source.name == "sim"
        self._reported = self._stats.report()

        self._color_pub = self.create_publisher(Image, COLOR_TOPIC, FRAME_QOS)
        self._depth_pub = self.create_publisher(Image, DEPTH_TOPIC, FRAME_QOS)
        self._info_pub = self.create_publisher(CameraInfo, INFO_TOPIC, FRAME_QOS)
        self._status_pub = self.create_publisher(String, STATUS_TOPIC, 10)
        self._scene_pub = None  # created with the first frame that carries a scene (sim source)
        self._recorded_stamp_pub = (
            self.create_publisher(TimeReference, RECORDED_STAMP_TOPIC, FRAME_QOS)
            if self._source.name in REPLAYED_SOURCES
            else None
        )

        self._source.start()
        self._stop = threading.Event()
        self._capture = threading.Thread(target=self._capture_loop, name="perception-capture", daemon=True)
        self._capture.start()
        self.create_timer(float(p["status_period_s"]), self._report)
        rate = f"at most {p['rate_hz']:g} Hz" if p["rate_hz"] > 0 else "every frame"
        self.get_logger().info(
            f"publishing source '{self._source.name}' on {COLOR_TOPIC}, {DEPTH_TOPIC}, {INFO_TOPIC} "
            f"(frame {self._frame_id}, {rate})"
        )

    def _capture_loop(self) -> None:
        while not self._stop.is_set():
            if self._restarts.restart_pending:
                if self._stop.wait(self._restarts.wait_s(time.monotonic())):
                    return
                self._restart_source()
                continue
            if self._read_when_due and self._stop.wait(self._limiter.wait_s(time.time_ns())):
                return
            try:
                frame = self._source.read(self._read_timeout_s)
            except Exception as exc:  # the thread's boundary: whatever broke the source, restart it
                self._source_failed("failed", exc)
                continue
            if frame is None:
                if getattr(self._source, "finished", False):  # end of a recording
                    self._restarts.finished()
                    self.get_logger().info("recording finished")
                    return
                self._stats.timeout()
                continue
            self._restarts.frame(time.monotonic())
            now_ns = time.time_ns()
            self._stats.frame(frame.sequence, frame.stamp_ns, now_ns)
            if not self._limiter.allow(now_ns):
                self._stats.skipped()
                continue
            try:
                self._publish(frame)
            except Exception:
                # Ctrl-C shuts the context down before the node is destroyed: this thread then ends
                # here, quietly, instead of dying on "publisher's context is invalid" while the main
                # thread tears the node and the camera down (a loaded CI run saw a segfault after it).
                if not self.context.ok():
                    return
                raise
            self._stats.published()

    def _source_failed(self, what: str, exc: Exception) -> None:
        error = str(exc) if isinstance(exc, CameraError) else repr(exc)
        delay_s = self._restarts.failed(error, time.monotonic())
        self.get_logger().error(f"camera source '{self._source.name}' {what}: {error}; restarting it in {delay_s:g} s")
        try:
            self._source.stop()
        except Exception as stop_exc:  # a dead device may fail to stop too; the restart still goes ahead
            self.get_logger().warning(f"stopping the failed camera source failed too: {stop_exc!r}")

    def _restart_source(self) -> None:
        try:
            self._source.start()
        except Exception as exc:
            self._source_failed("did not start again", exc)
            return
        self.get_logger().info(
            f"camera source '{self._source.name}' started again (restart {self._restarts.restarted()})"
        )

    def _publish(self, frame: RgbdFrame) -> None:
        stamp = ns_to_stamp(frame.stamp_ns)
        self._color_pub.publish(numpy_to_image(frame.color, "rgb8", stamp, self._frame_id))
        self._depth_pub.publish(numpy_to_image(frame.depth_mm, "16UC1", stamp, self._frame_id))
        self._info_pub.publish(camera_info_msg(frame.intrinsics, stamp, self._frame_id))
        if "scene" in frame.extras:
            self._publish_scene(frame.extras["scene"], stamp)
        if frame.recorded_stamp_ns is not None:
            self._publish_recorded_stamp(frame.recorded_stamp_ns, stamp)

    def _publish_scene(self, scene, stamp) -> None:
        # Only the simulator's frames carry ground truth: the publisher and its conversion appear with it.
        from vla_r1_ros.nodes.scene_msgs import scene_to_msg

        if self._scene_pub is None:
            # Reliable: ground truth is small, and scorers match it to frames by stamp.
            self._scene_pub = self.create_publisher(SceneState, SCENE_TOPIC, 10)
        self._scene_pub.publish(scene_to_msg(scene, stamp, self._base_frame))

    def _publish_recorded_stamp(self, recorded_stamp_ns: int, stamp) -> None:
        msg = TimeReference(time_ref=ns_to_stamp(recorded_stamp_ns), source=self._source.name)
        msg.header.stamp, msg.header.frame_id = stamp, self._frame_id
        self._recorded_stamp_pub.publish(msg)

    def _report(self) -> None:
        report = {"source": self._source.name, **self._restarts.report(), **self._stats.report()}
        self._status_pub.publish(String(data=json.dumps(report)))
        problems = {k: report[k] - self._reported[k] for k in ("stale", "dropped", "timeouts")}
        self._reported = report
        summary = (
            f"{report['rate_hz']} Hz, {report['published']} published, {report['stale']} stale, "
            f"{report['dropped']} dropped, {report['timeouts']} timeouts ({report['state']}, "
            f"{report['restarts']} restarts)"
        )
        if report["state"] == RESTARTING:  # each failure is logged when it happens; this is a reminder
            self.get_logger().warning(f"{summary}; last error: {report['last_error']}", throttle_duration_sec=30.0)
        elif any(problems.values()) and report["state"] == STREAMING:
            self.get_logger().warning(f"{summary}; since last report: {problems}")
        else:
            self.get_logger().info(summary, throttle_duration_sec=30.0)

    def destroy_node(self) -> None:
        self._stop.set()
        self._capture.join()
        self._source.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    # Camera modules log through Python logging; show them next to the node's own log.
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    rclpy.init(args=args)
    node = None
    context = None
    try:
        context = ProcessContext(PackageConfig.load())
        # A source that cannot start at all (no camera, no recording) is an error at launch: exit 1 (a
        # launch file's `respawn` tries again). Once started, a failing source is restarted in the node.
        node = PerceptionNode(context)
        rclpy.spin(node)
    except CameraError as exc:
        logging.getLogger("perception").error(str(exc))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if context is not None:
            context.close()
        rclpy.try_shutdown()
    if node is None:
        sys.exit(1)


if __name__ == "__main__":
    main()
