"""`vla-r1 trials --record` (what `vla-r1 demo --record` runs): a real 3-trial run — the graph's processes
over DDS, the package's recorder among them — gives a rosbag2 bag that an independent reader opens: rosbags'
`AnyReader`, not the project's code. Every recorded topic has messages, every image decodes at its size,
and each episode of the log names its bag and its span in it (`recording.json`), which holds that trial's
own prediction, plan and logged line.

A full disk stops the recording and not the graph: the recorder, a real process writing onto a tmpfs of
its own (mounting one needs root: elsewhere that test is skipped), fills it, says so on `recorder/status`
and exits 0 while the simulated camera it records goes on publishing. Nothing is mocked.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image
from std_msgs.msg import String
from test_faults import disk_of_its_own

from vla_r1_ros import topics
from vla_r1_ros.core.config import load_config, node_defaults
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import stamp_to_ns
from vla_r1_ros.nodes.perception_node import FRAME_QOS, PerceptionNode
from vla_r1_ros.nodes.recorder_node import STATUS_QOS
from vla_r1_ros.testing.ros import spin_until

TRIALS = 3
TRIALS_COMMAND = (sys.executable, "-m", "vla_r1_ros.cli.main", "trials", "--record")
IMAGE_TOPICS = ("/camera/color/image_raw", "/camera/aligned_depth_to_color/image_raw", "/vla_r1/annotated_image")
CHANNELS = {"rgb8": (1, 3), "16UC1": (2, 1)}  # bytes per channel, channels


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recorded") / "run"
    run = subprocess.run(
        [*TRIALS_COMMAND, "--n", str(TRIALS), "--out", str(out), "--no-report", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def test_a_recorded_run_gives_a_bag_anyreader_opens_with_every_topic_and_each_episodes_span(recorded_run, config):
    out = recorded_run
    recording = json.loads((out / "recording.json").read_text())
    assert json.loads((out / "summary.json").read_text())["recording"] == "recording.json"
    bag = out / recording["bag"]
    assert (bag / "metadata.yaml").is_file() and len(list(bag.glob("*.mcap"))) == 1  # as rosbag2 writes a bag
    assert yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["storage_identifier"] == (
        "mcap"
    )
    recorded = [f"/{topic}" for topic in node_defaults(config, "recorder")["topics"]]
    image = load_config("camera")["image"]
    with AnyReader([bag]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert {topic: counts.get(topic, 0) > 0 for topic in recorded} == dict.fromkeys(recorded, True)
        by_topic: dict[str, list] = {}
        for connection, stamp_ns, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            by_topic.setdefault(connection.topic, []).append((stamp_ns, msg))
    # The custom messages came with their definitions: the reader decoded them from the bag alone.
    assert by_topic["/vla_r1/prediction"][0][1].__class__.__name__ == "vla_r1_interfaces__msg__VlaPrediction"
    for topic in IMAGE_TOPICS:
        for _stamp, msg in by_topic[topic]:
            width, height = int(image["width"]), int(image["height"])
            size, channels = CHANNELS[msg.encoding]
            assert (msg.width, msg.height, msg.step) == (width, height, width * size * channels), topic
            pixels = np.frombuffer(msg.data, dtype=np.uint8 if size == 1 else np.uint16)
            assert pixels.reshape(height, width, channels).shape == (height, width, channels)
    colors = [msg for _stamp, msg in by_topic["/camera/color/image_raw"]]
    assert any(np.frombuffer(msg.data, np.uint8).std() > 10 for msg in colors)  # a rendered scene, not a blank

    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    spans = {span["trial_id"]: span for span in recording["trials"]}
    assert len(index) == TRIALS and set(spans) == {entry["trial_id"] for entry in index}
    for entry in index:
        start_ns, end_ns = spans[entry["trial_id"]]["start_ns"], spans[entry["trial_id"]]["end_ns"]
        assert start_ns < entry["stamp_ns"] < end_ns  # the trial's frame was captured in it
        inside = {
            topic: [msg for stamp_ns, msg in messages if start_ns <= stamp_ns <= end_ns]
            for topic, messages in by_topic.items()
        }
        assert inside["/camera/color/image_raw"] and inside["/joint_states"]
        # The trial's answer and plan (stamped with its frame's capture time) and its logged line, each
        # received once and never before its span began; DDS may resend one late (a lost UDP fragment under
        # the images' load waits for the writer's heartbeat), so its receive time may fall after the span.
        after = {topic: [(t, m) for t, m in messages if t >= start_ns] for topic, messages in by_topic.items()}
        (prediction,) = [m for _t, m in after["/vla_r1/prediction"] if stamp_to_ns(m.header.stamp) == entry["stamp_ns"]]
        assert prediction.instruction == entry["instruction"]
        assert len([m for _t, m in after["/vla_r1/plan"] if stamp_to_ns(m.header.stamp) == entry["stamp_ns"]]) == 1
        logged_ids = [json.loads(m.data)["trial_id"] for _t, m in after["/vla_r1/episode_logged"]]
        assert logged_ids.count(entry["trial_id"]) == 1
    # Every answer in the bag belongs to a logged trial: the spans and the stamps tell the same trials.
    assert len(by_topic["/vla_r1/prediction"]) == TRIALS


def test_a_full_disk_stops_the_recording_and_not_the_graph(executor, config, workcell, tmp_path):
    camera = PerceptionNode(ProcessContext(config, workcell))
    statuses: list[dict] = []
    frames: list[int] = []
    camera.create_subscription(
        String, topics.RECORDER_STATUS, lambda msg: statuses.append(json.loads(msg.data)), STATUS_QOS
    )
    camera.create_subscription(Image, topics.COLOR, lambda _msg: frames.append(1), FRAME_QOS)
    executor.add_node(camera)
    with disk_of_its_own(tmp_path / "disk", size="4m") as disk:
        params = tmp_path / "recorder.yaml"
        params.write_text(yaml.safe_dump({"recorder": {"ros__parameters": {"bag_dir": str(disk / "bag")}}}))
        recorder = subprocess.Popen(
            [sys.executable, "-m", "vla_r1_ros.nodes.recorder_node", "--ros-args", "--params-file", str(params)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            spin_until(executor, lambda: recorder.poll() is not None, 90.0)
        finally:
            if recorder.poll() is None:
                recorder.kill()
        log = recorder.stdout.read().decode(errors="replace")
        assert recorder.wait() == 0, log  # it ended cleanly, on its own
        assert "recording stopped: writing the bag" in log and "disk full" in log, log
        assert spin_until(executor, lambda: any(s["state"] == "stopped" for s in statuses), 5.0), statuses
        stopped = next(s for s in statuses if s["state"] == "stopped")
        assert "disk full" in stopped["error"] and stopped["messages"]["/camera/color/image_raw"] > 0
    before = len(frames)
    assert spin_until(executor, lambda: len(frames) >= before + 3, 10.0)  # the camera it recorded goes on


def panels(tree) -> list[str]:
    """The panel ids of a Foxglove layout tree (a panel id, or a split of two trees)."""
    return [tree] if isinstance(tree, str) else [*panels(tree["first"]), *panels(tree["second"])]


def test_the_foxglove_layout_shows_recorded_topics_and_fields_the_messages_have(config):
    """config/foxglove_layout.json (shipped with the package): every panel it places is configured, and
    every topic and message field it shows is one the recorder records, as the messages define it."""
    from vla_r1_ros.core.config import package_share_path
    from vla_r1_ros.core.recording import package_typestore

    layout = json.loads(package_share_path("config", "foxglove_layout.json").read_text())
    placed = panels(layout["layout"])
    assert sorted(placed) == sorted(layout["configById"])
    assert {panel.partition("!")[0] for panel in placed} == {"Image", "3D", "Plot", "RawMessages"}
    recorded = {f"/{topic}" for topic in node_defaults(config, "recorder")["topics"]}
    shown: list[str] = []
    for settings in layout["configById"].values():
        image = settings.get("imageMode", {})
        shown += [image[key] for key in ("imageTopic", "calibrationTopic") if key in image]
        shown += list(settings.get("topics", {}))
        shown += [path["value"] for path in settings.get("paths", [])] + [settings.get("topicPath", "")]
    shown = [path for path in shown if path]
    store = package_typestore()
    types = {"/vla_r1/prediction": "vla_r1_interfaces/msg/VlaPrediction", "/joint_states": "sensor_msgs/msg/JointState"}
    for path in shown:
        topic, _, field = path.partition(".")
        assert topic in recorded, path
        if field:
            msgtype = types.get(topic, "std_msgs/msg/String")
            names = [name for name, _desc in store.fielddefs[msgtype][1]]
            assert field.partition("[")[0] in names, path
    assert {"/camera/color/image_raw", "/vla_r1/annotated_image", "/vla_r1/plan_markers"} <= set(shown)
