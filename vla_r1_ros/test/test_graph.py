"""The launch file and `vla-r1 demo` start the same graph; the launch file checks its arguments and the
packages it needs before anything starts, and every process dies with whatever launched it.

`launch` and `launch_ros` cannot be installed here, so the launch file runs against the test double
`launch_jazzy_double` (written from their Jazzy sources; see its docstring); what it records is compared
with what `vla-r1 demo`'s launcher runs. Which packages are installed is asked of the real
`ament_index_python` over a prefix each test lays out.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
from pathlib import Path

import launch_jazzy_double
import pytest
import yaml

from vla_r1_ros.core.config import load_config
from vla_r1_ros.graph import GraphArgs, MissingPackageError, build_graph, recording
from vla_r1_ros.launcher import GraphLauncher, process_command

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "demo.launch.py"
OTHER_PACKAGES = ("robot_state_publisher", "rviz2", "realsense2_camera", "ros2bag", "rosbag2_storage_mcap")


@pytest.fixture
def ament_prefix(tmp_path, monkeypatch):
    """Install packages into an ament prefix of this test only (the index's marker file and share/):
    `ament_prefix(*packages)`; at first all of OTHER_PACKAGES are."""

    def install(*packages: str) -> None:
        prefix = tmp_path / f"ament-{'-'.join(packages) or 'none'}"
        for package in packages:
            (prefix / "share" / package).mkdir(parents=True)
            marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / package
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        prefix.mkdir(exist_ok=True)
        monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))

    install(*OTHER_PACKAGES)
    return install


def _launched_nodes(monkeypatch, overrides: dict[str, str]) -> list[dict]:
    """Run the launch file like `ros2 launch … name:=value`: declared defaults, then overrides."""
    return launch_jazzy_double.launch(launch_jazzy_double.launch_file(LAUNCH_FILE, monkeypatch), overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"noise": "paper", "seed": "7", "log_dir": "/tmp/x", "use_rviz": "true"},
        {"camera": "realsense", "executor": "moveit", "policy": "vla_r1", "model": "/models/vla-r1"},
        {"camera": "replay", "executor": "moveit", "policy": "vla_r1", "recording": "/data/a.db3"},
        {"camera": "realsense_ros", "executor": "moveit", "policy": "vla_r1"},
        {"camera": "realsense_ros", "executor": "moveit", "policy": "vla_r1", "camera_driver": "false"},
        {"path_convention": "sharerobot"},
        {"camera": "realsense", "executor": "moveit", "policy": "vla_r1", "robot_description": "external"},
        {"policy": "vla_r1", "backend": "openai", "server_url": "http://gpu-host:8000/v1"},
    ],
)
def test_launch_file_starts_exactly_the_graph_description(monkeypatch, ament_prefix, overrides):
    launched = _launched_nodes(monkeypatch, overrides)
    args = GraphArgs.from_strings(GraphArgs().as_strings() | overrides)
    assert launched == [process.launch_kwargs(args) for process in build_graph(args)]


def test_demo_runs_the_same_processes_as_the_launch_file(monkeypatch, ament_prefix, tmp_path):
    launched = _launched_nodes(monkeypatch, {})
    launcher = GraphLauncher(GraphArgs(), tmp_path)
    expected_commands = [process_command(kwargs, tmp_path) for kwargs in launched if kwargs["package"] == "vla_r1_ros"]
    started: list[list[str]] = []
    monkeypatch.setattr(launcher, "_spawn", lambda running: started.append(running.command))
    launcher.start()
    launcher._stopping.set()
    assert started == expected_commands
    assert launcher.skipped == ["robot_state_publisher/robot_state_publisher"]


def test_default_graph_composes_the_simulator_nodes_and_runs_the_rest_alone():
    processes = {p.name: p for p in build_graph(GraphArgs())}
    assert [n.name for n in processes["sim_stack"].nodes] == ["workcell", "perception", "planning"]
    assert processes["inference"].nodes[0].parameters["policy"] == "scripted"
    real = {p.name: p for p in build_graph(GraphArgs(camera="realsense", executor="moveit", policy="vla_r1"))}
    assert "sim_stack" not in real
    # Every process holding a planning node respawns, and it spools into the log folder: a planning process
    # that dies loses no finished trial (the one started again delivers them).
    assert real["perception"].respawn and real["planning"].respawn and processes["sim_stack"].respawn
    spool = real["planning"].nodes[0].parameters["spool_dir"]
    assert spool == str(Path(GraphArgs().log_dir) / ".planning_outbox")


def test_process_command_matches_launch_ros_conventions(tmp_path):
    args = GraphArgs(camera="realsense", executor="moveit", policy="vla_r1", model="/m")
    inference = next(p for p in build_graph(args) if p.name == "inference")
    kwargs = inference.launch_kwargs(args)
    command = process_command(kwargs, tmp_path)
    prefix = shlex.split(kwargs["prefix"])  # launch runs the prefix, then the executable
    assert command[len(prefix) : len(prefix) + 3] == [sys.executable, "-m", "vla_r1_ros.nodes.inference_node"]
    ros_args = command[command.index("--ros-args") + 1 :]
    assert ros_args[:2] == ["-r", "__node:=inference"]
    params = yaml.safe_load(Path(ros_args[ros_args.index("--params-file") + 1]).read_text())
    assert params["inference"]["ros__parameters"]["model"] == "/m"
    composed = next(p for p in build_graph(GraphArgs()) if p.composed)
    assert "name" not in composed.launch_kwargs(GraphArgs())  # a process-wide __node remap would rename all


# realsense2_camera's launch arguments = its node's parameters (IntelRealSense/realsense-ros ros2-master
# 1cbd81be81e807eefb46f098e76381888ffc7001, realsense2_camera/launch/rs_launch.py `configurable_parameters`,
# the names the driver's parameters go by), the subset the graph may set.
RS_LAUNCH_PARAMETERS = {
    "camera_name", "camera_namespace", "serial_no", "enable_color", "rgb_camera.color_profile",
    "rgb_camera.color_format", "enable_depth", "depth_module.depth_profile", "depth_module.depth_format",
    "enable_sync", "publish_tf", "align_depth.enable", "spatial_filter.enable", "temporal_filter.enable",
    "hole_filling_filter.enable", "decimation_filter.enable",
}  # fmt: skip


def test_realsense_ros_starts_the_official_driver_and_points_every_consumer_at_its_topics(monkeypatch, ament_prefix):
    overrides = {"camera": "realsense_ros", "executor": "moveit", "policy": "vla_r1"}
    launched = {kwargs["name"]: kwargs for kwargs in _launched_nodes(monkeypatch, overrides) if "name" in kwargs}
    assert "perception" not in launched  # the driver is the camera
    driver = launched["camera"]
    # As rs_launch.py starts it: the node `camera` in the namespace `camera`.
    assert (driver["package"], driver["executable"], driver["namespace"]) == (
        "realsense2_camera",
        "realsense2_camera_node",
        "camera",
    )
    (parameters,) = driver["parameters"]
    assert set(parameters) <= RS_LAUNCH_PARAMETERS
    assert parameters["align_depth.enable"] is True and parameters["enable_sync"] is True
    camera = load_config("camera")
    size = f"{camera['image']['width']},{camera['image']['height']},30"
    assert parameters["rgb_camera.color_profile"] == parameters["depth_module.depth_profile"] == size
    assert parameters["rgb_camera.color_format"] == "RGB8" and parameters["publish_tf"] is False
    # The driver names its optical frame <camera_name>_color_optical_frame: the frame the extrinsics are for.
    assert f"{parameters['camera_name']}_color_optical_frame" == camera["frames"]["camera_optical"]
    # Its topics are ~/<stream>: /camera/camera/... ; the planning node, the one consumer, takes them.
    driver_topics = {
        "camera/color/image_raw": "/camera/camera/color/image_raw",
        "camera/aligned_depth_to_color/image_raw": "/camera/camera/aligned_depth_to_color/image_raw",
        "camera/color/camera_info": "/camera/camera/color/camera_info",
    }
    assert dict(launched["planning"]["remappings"]) == driver_topics
    assert launched["planning"]["parameters"][0]["scene"] is False  # a real camera has no ground truth
    for frameless in ("inference", "reward_logger"):  # they get the frame inside the goal / the record
        assert not launched[frameless]["remappings"]
    # A lab running the driver itself keeps the remappings and starts no second driver.
    own = _launched_nodes(monkeypatch, overrides | {"camera_driver": "false"})
    assert [k["package"] for k in own].count("realsense2_camera") == 0
    assert all(dict(k["remappings"]) == driver_topics for k in own if k.get("name") == "planning")
    # The other cameras publish on our own names: nothing is remapped.
    for args in (GraphArgs(), GraphArgs(camera="realsense", executor="moveit", policy="vla_r1")):
        assert all(not node.remappings for process in build_graph(args) for node in process.nodes)


def test_the_doubles_refuse_what_launch_and_launch_ros_do_not_have(monkeypatch):
    launch_jazzy_double.launch_file(LAUNCH_FILE, monkeypatch)
    import launch.actions

    with pytest.raises(TypeError):
        launch_jazzy_double.Node(executable="x", node_namespace="camera")  # the pre-Foxy name
    with pytest.raises(AttributeError):
        launch.actions.LogWarning  # noqa: B018 - no such action in Jazzy


def test_robot_state_publisher_only_when_nothing_else_publishes_the_robot_description(monkeypatch, ament_prefix):
    real = {"camera": "realsense", "executor": "moveit", "policy": "vla_r1"}
    own = [k["package"] for k in _launched_nodes(monkeypatch, real)]
    external = [k["package"] for k in _launched_nodes(monkeypatch, real | {"robot_description": "external"})]
    assert own.count("robot_state_publisher") == 1  # the default: this package's URDF
    assert "robot_state_publisher" not in external  # MoveIt's bring-up publishes /robot_description
    assert sorted(own) == sorted([*external, "robot_state_publisher"])  # and nothing else changes
    publisher = next(k for k in _launched_nodes(monkeypatch, real) if k["package"] == "robot_state_publisher")
    assert "camera_color_optical_frame" in publisher["parameters"][0]["robot_description"]


def test_backend_and_server_url_reach_the_inference_nodes_policy():
    """`backend:=openai server_url:=…` become inference-node parameters, and the node's own factory
    builds the remote policy from exactly those parameters."""
    from vla_r1_ros.core.config import PackageConfig
    from vla_r1_ros.policies import make_policy

    args = GraphArgs.from_strings({"policy": "vla_r1", "backend": "openai", "server_url": "http://gpu-host:8000/v1"})
    params = next(p for p in build_graph(args) if p.name == "inference").nodes[0].parameters
    assert params["backend"] == "openai" and params["server_url"] == "http://gpu-host:8000/v1"
    node_params = {k: v for k, v in params.items() if k not in ("policy", "noise", "path_convention")}
    policy = make_policy(params["policy"], PackageConfig.load(), node_params)
    assert policy.model_id.startswith("vla_r1:openai:") and policy.base_url == "http://gpu-host:8000/v1"
    with pytest.raises(ValueError, match="backend:='onnx'"):
        GraphArgs(backend="onnx")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"camera": "kinect"}, "camera"),
        ({"camera": "sim", "executor": "moveit"}, "go together"),
        ({"camera": "realsense", "executor": "moveit"}, "scripted"),
        ({"camera": "replay", "executor": "moveit", "policy": "vla_r1"}, "recording"),
        ({"colour": "red"}, "unknown"),
        ({"camera": "realsense_ros", "executor": "sim"}, "go together"),
        ({"path_convention": "backwards"}, "path_convention"),
        ({"robot_description": "both"}, "robot_description"),
    ],
)
def test_bad_graph_arguments_are_refused_with_a_reason(values, message):
    with pytest.raises(ValueError, match=message):
        GraphArgs.from_strings(values)


def test_every_file_the_graph_names_ships_with_the_package():
    rviz = next(p for p in build_graph(GraphArgs(use_rviz=True)) if p.name == "rviz2")
    config = Path(rviz.nodes[0].arguments[1])
    assert config.is_file()
    displays = yaml.safe_load(config.read_text())["Visualization Manager"]["Displays"]
    assert "/vla_r1/plan_markers" in [d.get("Topic", {}).get("Value") for d in displays]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"seed": "abc"}, "seed:='abc' is not an integer"),
        ({"seed": "1.5"}, "seed:='1.5' is not an integer"),
        ({"seed": "-1"}, "seed:=-1 is not a non-negative integer"),
        ({"use_rviz": "yes"}, "use_rviz:='yes' is not a boolean: use true, 1, false, 0 (any case)"),
        ({"use_rviz": ""}, "use_rviz:='' is not a boolean"),
        ({"camera_driver": "off"}, "camera_driver:='off' is not a boolean: use true, 1, false, 0 (any case)"),
        ({"camera": "kinect"}, "camera:='kinect' is not one of sim, realsense, replay, bag, realsense_ros"),
        ({"record": "yes"}, "record:='yes' is not a boolean"),
        ({"camera": "bag", "executor": "moveit", "policy": "vla_r1"}, "camera:=bag needs bag:=/path/to/bag"),
        ({"camera": "bag", "executor": "moveit", "policy": "vla_r1", "bag": "/no/bag"}, "bag:=/no/bag: no rosbag2 bag"),
        ({"policy": "gpt"}, "policy:='gpt' is not one of scripted, vla_r1"),
        ({"executor": "ros_control"}, "executor:='ros_control' is not one of sim, moveit"),
        ({"quantization": "fp8"}, "quantization:='fp8' is not one of auto, nf4, int8, int4_decode, none"),
        ({"backend": "onnx"}, "backend:='onnx' is not one of transformers, openai"),
        ({"path_convention": "backwards"}, "path_convention:='backwards' is not one of carry, sharerobot"),
        ({"robot_description": "both"}, "robot_description:='both' is not one of own, external"),
        ({"noise": "loud"}, "noise:='loud': "),
        ({"noise": "iou=2"}, "noise:='iou=2': error model iou"),
        ({"server_url": "gpu-host:8000"}, "server_url:='gpu-host:8000' is not an http:// or https:// URL"),
        ({"model": " "}, "model:= is empty"),
        ({"log_dir": ""}, "log_dir:= is empty"),
        ({"camera": "replay", "executor": "moveit", "policy": "vla_r1"}, "camera:=replay needs recording"),
        ({"colour": "red"}, "unknown launch argument(s) colour; the arguments are camera, camera_driver"),
    ],
)
def test_every_launch_argument_is_validated_with_its_name_and_the_allowed_values(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        GraphArgs.from_strings(values)


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("True", True), ("1", True), ("FALSE", False), ("0", False)]
)
def test_booleans_take_launchs_spellings(text, value):
    assert GraphArgs.from_strings({"use_rviz": text}).use_rviz is value
    assert GraphArgs.from_strings(GraphArgs(use_rviz=value).as_strings()) == GraphArgs(use_rviz=value)


def _record_nodes(monkeypatch) -> list[dict]:
    """Every launch_ros Node the launch file constructs (a Node is what would start a process)."""
    constructed: list[dict] = []
    real_init = launch_jazzy_double.Node.__init__

    def recording_init(self, *args, **kwargs):
        constructed.append(kwargs)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(launch_jazzy_double.Node, "__init__", recording_init)
    return constructed


def test_a_bad_launch_argument_ends_the_launch_before_any_node_with_the_message(monkeypatch, ament_prefix):
    constructed = _record_nodes(monkeypatch)
    with pytest.raises(ValueError, match="seed:='abc' is not an integer"):
        _launched_nodes(monkeypatch, {"seed": "abc"})
    assert constructed == []


def test_missing_optional_packages_are_skipped_with_a_warning_naming_the_apt_package(monkeypatch, ament_prefix, caplog):
    ament_prefix()  # none of robot_state_publisher, rviz2, realsense2_camera
    with caplog.at_level(logging.WARNING, logger="launch.user"):
        launched = _launched_nodes(monkeypatch, {"use_rviz": "true"})
    assert sorted(caplog.messages) == [
        "robot_state_publisher is not installed: robot_state_publisher is not started "
        "(sudo apt install ros-jazzy-robot-state-publisher)",
        "rviz2 is not installed: rviz2 is not started (sudo apt install ros-jazzy-rviz2)",
    ]
    args = GraphArgs(use_rviz=True)
    assert launched == [p.launch_kwargs(args) for p in build_graph(args) if p.package == "vla_r1_ros"]

    caplog.clear()
    ament_prefix("rviz2")  # an installed one is started, only the missing one is named
    with caplog.at_level(logging.WARNING, logger="launch.user"):
        launched = _launched_nodes(monkeypatch, {"use_rviz": "true"})
    assert [k["package"] for k in launched].count("rviz2") == 1
    assert caplog.messages == [
        "robot_state_publisher is not installed: robot_state_publisher is not started "
        "(sudo apt install ros-jazzy-robot-state-publisher)"
    ]


def test_a_missing_package_the_graph_needs_ends_the_launch_before_any_node_naming_it(monkeypatch, ament_prefix):
    ament_prefix("robot_state_publisher")
    constructed = _record_nodes(monkeypatch)
    overrides = {"camera": "realsense_ros", "executor": "moveit", "policy": "vla_r1"}
    with pytest.raises(MissingPackageError, match="sudo apt install ros-jazzy-realsense2-camera"):
        _launched_nodes(monkeypatch, overrides)
    assert constructed == []  # nothing was started that the failed launch could leave behind
    started = _launched_nodes(monkeypatch, overrides | {"camera_driver": "false"})  # a driver the lab runs
    assert "realsense2_camera" not in [k["package"] for k in started] and len(constructed) == len(started)


def test_every_process_is_started_through_die_with_launcher_with_the_launchers_pid(monkeypatch, ament_prefix, tmp_path):
    launched = _launched_nodes(monkeypatch, {"use_rviz": "true"})
    expected = [sys.executable, "-m", "vla_r1_ros.die_with_launcher", str(os.getpid())]
    assert launched and all(shlex.split(kwargs["prefix"]) == expected for kwargs in launched)
    args = GraphArgs(use_rviz=True)  # launch labels each process by its name in the graph, not `python`
    assert [kwargs["exec_name"] for kwargs in launched] == [p.name for p in build_graph(args)]
    for kwargs in launched:
        if kwargs["package"] == "vla_r1_ros":  # and `vla-r1 demo` runs the same prefix first
            assert process_command(kwargs, tmp_path)[: len(expected)] == expected


RECORDED = [
    "/camera/color/image_raw",
    "/camera/aligned_depth_to_color/image_raw",
    "/camera/color/camera_info",
    "/joint_states",
    "/vla_r1/prediction",
    "/vla_r1/plan",
    "/vla_r1/plan_markers",
    "/vla_r1/annotated_image",
    "/vla_r1/status",
    "/planning/status",
    "/perception/status",
    "/vla_r1/episode_logged",
]


def test_record_true_starts_rosbag2s_mcap_recorder_on_the_graphs_topics(monkeypatch, ament_prefix):
    overrides = {"record": "true", "log_dir": "/tmp/run"}
    (record,) = launch_jazzy_double.executed_processes(
        launch_jazzy_double.launch_file(LAUNCH_FILE, monkeypatch), overrides
    )
    cmd = record["cmd"]
    assert cmd[:7] == ["ros2", "bag", "record", "-s", "mcap", "-o", cmd[6]] and cmd[7:] == RECORDED
    assert re.fullmatch(r"/tmp/run/bags/rosbag2_\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d", cmd[6])
    expected_prefix = [sys.executable, "-m", "vla_r1_ros.die_with_launcher", str(os.getpid())]
    assert shlex.split(record["prefix"]) == expected_prefix  # it dies with the launch as every node does
    args = GraphArgs.from_strings(overrides)
    assert _launched_nodes(monkeypatch, overrides) == [p.launch_kwargs(args) for p in build_graph(args)]
    assert launch_jazzy_double.executed_processes(launch_jazzy_double.launch_file(LAUNCH_FILE, monkeypatch), {}) == []
    # With the RealSense driver the camera is recorded under the driver's names.
    driver = recording(GraphArgs(camera="realsense_ros", executor="moveit", policy="vla_r1", record=True))
    assert driver.topics[:3] == (
        "/camera/camera/color/image_raw",
        "/camera/camera/aligned_depth_to_color/image_raw",
        "/camera/camera/color/camera_info",
    )


def test_record_true_without_rosbag2s_mcap_storage_ends_the_launch_before_any_node(monkeypatch, ament_prefix):
    ament_prefix("robot_state_publisher", "ros2bag")
    constructed = _record_nodes(monkeypatch)
    with pytest.raises(MissingPackageError, match="sudo apt install ros-jazzy-rosbag2-storage-mcap"):
        _launched_nodes(monkeypatch, {"record": "true"})
    assert constructed == []


def test_demo_records_with_the_packages_recorder_in_place_of_rosbag2(monkeypatch, ament_prefix, tmp_path):
    """`vla-r1 demo --record` runs the graph's processes and the recorder node on the same topics."""
    args = GraphArgs(record=True, log_dir=str(tmp_path / "run"))
    launcher = GraphLauncher(args, tmp_path)
    started: list[list[str]] = []
    monkeypatch.setattr(launcher, "_spawn", lambda running: started.append(running.command))
    launcher.start()
    launcher._stopping.set()
    graph = [process_command(p.launch_kwargs(args), tmp_path) for p in build_graph(args) if p.package == "vla_r1_ros"]
    assert started[:-1] == graph
    assert "vla_r1_ros.nodes.recorder_node" in started[-1]
    params = yaml.safe_load((tmp_path / "recorder.params.yaml").read_text())["recorder"]["ros__parameters"]
    assert params == {"bag_dir": launcher.recording.bag_dir, "topics": RECORDED}
    assert launcher.recording.bag_dir.startswith(str(tmp_path / "run" / "bags" / "rosbag2_"))
