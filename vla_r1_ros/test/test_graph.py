"""The launch file and `vla-r1 demo` start the same graph.

`launch` and `launch_ros` cannot be installed here, so this test gives the launch file test doubles
of `launch`, `launch.actions`, `launch.substitutions` and `launch_ros.actions` that record what it
builds; what it records is compared with what `vla-r1 demo`'s launcher runs. The doubles implement
only the documented behaviour the launch file relies on (DeclareLaunchArgument's default,
LaunchConfiguration.perform, OpaqueFunction calling its function with the context, Node(**kwargs)).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from vla_r1_ros.graph import GraphArgs, build_graph
from vla_r1_ros.launcher import GraphLauncher, process_command

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "demo.launch.py"


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


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
        "launch_ros.actions": types.SimpleNamespace(Node=_Recorded),
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


def test_backend_and_server_url_reach_the_inference_nodes_policy():
    """`backend:=openai server_url:=…` become inference-node parameters, and the node's own factory
    builds the remote policy from exactly those parameters."""
    from vla_r1_ros.core.config import load_config
    from vla_r1_ros.policies import make_policy

    args = GraphArgs.from_strings({"policy": "vla_r1", "backend": "openai", "server_url": "http://gpu-host:8000/v1"})
    params = next(p for p in build_graph(args) if p.name == "inference").nodes[0].parameters
    assert params["backend"] == "openai" and params["server_url"] == "http://gpu-host:8000/v1"
    node_params = {k: v for k, v in params.items() if k not in ("policy", "noise")}
    policy = make_policy(params["policy"], node_params, load_config("model"))
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
