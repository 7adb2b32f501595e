"""The launch file and `vla-r1 demo` start the same graph.

`launch` and `launch_ros` cannot be installed here, so this test gives the launch file test doubles
of `launch`, `launch.actions`, `launch.substitutions` and `launch_ros.actions` that record what it
builds; what it records is compared with what `vla-r1 demo`'s launcher runs. The doubles implement
only the documented behaviour the launch file relies on (DeclareLaunchArgument's default,
LaunchConfiguration.perform, OpaqueFunction calling its function with the context, Node(**kwargs));
the Node double accepts exactly the keyword arguments the real one does (see `_Node`).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from vla_r1_ros.core.config import load_config
from vla_r1_ros.graph import GraphArgs, build_graph
from vla_r1_ros.launcher import GraphLauncher, process_command

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "demo.launch.py"


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Node(_Recorded):
    """launch_ros.actions.Node: keyword-only arguments of `Node.__init__` (ros2/launch_ros jazzy
    62c56e53e86812023697fe330c83d327f54e7b18, launch_ros/launch_ros/actions/node.py) plus those it passes
    on through ExecuteProcess -> ExecuteLocal -> Action (ros2/launch jazzy
    09403fcebedb68dd259e9ab6b35bd8712b6596ec, launch/launch/actions/execute_process.py, execute_local.py,
    launch/launch/action.py). Anything else raises TypeError there, and here."""

    KEYWORDS = frozenset(
        {"executable", "package", "name", "namespace", "exec_name", "parameters", "remappings", "ros_arguments"}
        | {"arguments", "prefix", "cwd", "env", "additional_env", "shell", "sigterm_timeout", "sigkill_timeout"}
        | {"emulate_tty", "output", "output_format", "cached_output", "log_cmd", "on_exit", "respawn"}
        | {"respawn_delay", "respawn_max_retries", "condition"}
    )

    def __init__(self, *args, **kwargs):
        unknown = set(kwargs) - self.KEYWORDS
        if args or unknown or "executable" not in kwargs:
            raise TypeError(f"Node() takes keyword arguments {sorted(self.KEYWORDS)}; got {args} {sorted(unknown)}")
        super().__init__(**kwargs)


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


def _load_launch_file(monkeypatch):
    doubles = {
        "launch": types.SimpleNamespace(LaunchDescription=lambda entities: list(entities)),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=_Recorded, OpaqueFunction=_Recorded),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=_LaunchConfiguration),
        "launch_ros.actions": types.SimpleNamespace(Node=_Node),
    }
    for name, module in doubles.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("demo_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launched_nodes(monkeypatch, overrides: dict[str, str]) -> list[dict]:
    """Run the launch file like `ros2 launch … name:=value`: declared defaults, then overrides."""
    entities = _load_launch_file(monkeypatch).generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if "default_value" in e.kwargs}
    opaque = [e for e in entities if "function" in e.kwargs]
    assert len(opaque) == 1
    context = types.SimpleNamespace(launch_configurations=declared | overrides)
    return [node.kwargs for node in opaque[0].kwargs["function"](context)]


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
def test_launch_file_starts_exactly_the_graph_description(monkeypatch, overrides):
    launched = _launched_nodes(monkeypatch, overrides)
    args = GraphArgs.from_strings(GraphArgs().as_strings() | overrides)
    assert launched == [process.launch_kwargs(args) for process in build_graph(args)]


def test_demo_runs_the_same_processes_as_the_launch_file(monkeypatch, tmp_path):
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
    assert real["perception"].respawn and not real["planning"].respawn
    assert "sim_stack" not in real


def test_process_command_matches_launch_ros_conventions(tmp_path):
    args = GraphArgs(camera="realsense", executor="moveit", policy="vla_r1", model="/m")
    inference = next(p for p in build_graph(args) if p.name == "inference")
    command = process_command(inference.launch_kwargs(args), tmp_path)
    assert command[:3] == [sys.executable, "-m", "vla_r1_ros.nodes.inference_node"]
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


def test_realsense_ros_starts_the_official_driver_and_points_every_consumer_at_its_topics(monkeypatch):
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


def test_the_node_double_refuses_what_launch_ros_does_not_take():
    with pytest.raises(TypeError):
        _Node(executable="x", node_namespace="camera")  # the pre-Foxy name


def test_robot_state_publisher_only_when_nothing_else_publishes_the_robot_description(monkeypatch):
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
