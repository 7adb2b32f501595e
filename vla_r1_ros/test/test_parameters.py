"""Every node parameter's default lives in config/nodes.yaml (or, for a few, another config file), never
in code, and the launch only sets parameters a node declares.

- No code but `nodes/parameters.py` calls rclpy's `declare_parameter(s)`: a default written in a call is
  the literal this rules out, however it is spelled (a tuple of literals, a loop over pairs).
- Each section of nodes.yaml is one of our nodes, and the node declares exactly that section's keys
  plus its extras (defaults from camera.yaml / model.yaml), nothing else.
- Every parameter `build_graph` hands one of our nodes is declared by it, with the default's type (a
  ROS parameter refuses a value of another type: `rate_hz: 5` for a double stops the launch).
"""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter

from vla_r1_ros.core.config import PackageConfig, node_defaults
from vla_r1_ros.graph import GraphArgs, build_graph, recording
from vla_r1_ros.nodes import inference_node, perception_node, workcell_node
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.spin import destroy_node

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "vla_r1_ros"
DECLARING_MODULE = PACKAGE_DIR / "nodes" / "parameters.py"
RCLPY_DECLARE = ("declare_parameter", "declare_parameters")


def _no_extras(_config: PackageConfig) -> dict[str, Any]:
    return {}


# node_class (as graph.py names it) -> (nodes.yaml section, the parameters whose defaults another file gives).
NODES: dict[str, tuple[str, Callable[[PackageConfig], dict[str, Any]]]] = {
    "vla_r1_ros.nodes.perception_node:PerceptionNode": ("perception", perception_node.extra_parameters),
    "vla_r1_ros.nodes.planning_node:PlanningNode": ("planning", _no_extras),
    "vla_r1_ros.nodes.inference_node:InferenceNode": ("inference", inference_node.extra_parameters),
    "vla_r1_ros.nodes.reward_logger_node:RewardLoggerNode": ("reward_logger", _no_extras),
    "vla_r1_ros.nodes.workcell_node:WorkcellNode": ("workcell", workcell_node.extra_parameters),
    "vla_r1_ros.nodes.recorder_node:RecorderNode": ("recorder", _no_extras),
}
SECTIONS = {section: extras for section, extras in NODES.values()}


def expected_defaults(config: PackageConfig, section: str) -> dict[str, Any]:
    return node_defaults(config, section) | SECTIONS[section](config)


# ---- (a) no default in code ------------------------------------------------------------------------


def declare_calls(path: Path, root: Path = PACKAGE_DIR.parent) -> list[str]:
    """`file:line` of each call of rclpy's declare_parameter / declare_parameters (a method call, or a
    bare `declare_parameter`) in one module. Our own `declare_parameters(node, config, section)` is
    called as a bare name and reads config/nodes.yaml."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr in RCLPY_DECLARE) or (
            isinstance(func, ast.Name) and func.id == "declare_parameter"
        ):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return sorted(found, key=lambda call: int(call.rpartition(":")[2]))


def test_the_scan_finds_declare_parameter_calls(tmp_path):
    (tmp_path / "sample.py").write_text(
        "class N:\n"
        "    def __init__(self):\n"
        "        self.declare_parameter('a', 1.0)\n"
        "        {n: self.declare_parameter(n, d).value for n, d in (('b', 2), ('c', ''))}\n"
        "        self.declare_parameters('', [('d', 3)])\n"
        "        declare_parameters(self, config, 'n')\n"
    )
    assert declare_calls(tmp_path / "sample.py", tmp_path) == ["sample.py:3", "sample.py:4", "sample.py:5"]


def test_only_nodes_parameters_declares_parameters():
    modules = sorted(PACKAGE_DIR.rglob("*.py"))
    assert DECLARING_MODULE in modules and len(modules) > 20
    offenders = [call for path in modules if path != DECLARING_MODULE for call in declare_calls(path)]
    assert not offenders, (
        "node parameters are declared with a default in code; declare them with "
        f"nodes.parameters.declare_parameters from config/nodes.yaml: {', '.join(offenders)}"
    )


# ---- (b) nodes.yaml sections are exactly what the nodes declare ------------------------------------


class StandInCamera:
    """A camera that never delivers a frame: the perception node is built without the simulator."""

    name = "stand-in"

    def start(self) -> None:
        pass

    def read(self, timeout_s: float):
        time.sleep(min(timeout_s, 0.05))
        return None

    def stop(self) -> None:
        pass


class StandInWorkcell:
    """What the workcell node asks of the simulated workcell when it is built (no PyBullet)."""

    arm_joint_names = tuple(f"panda_joint{i}" for i in range(1, 8))
    finger_joint_names = ("panda_finger_joint1", "panda_finger_joint2")
    renderer = "stand-in"
    lock = threading.Lock()

    def reset(self, seed: int, num_objects: int | None = None) -> None:
        self.seed = seed


def build_node(section: str, config: PackageConfig, tmp_path: Path) -> Node:
    from vla_r1_ros.nodes.inference_node import InferenceNode
    from vla_r1_ros.nodes.perception_node import PerceptionNode
    from vla_r1_ros.nodes.planning_node import PlanningNode
    from vla_r1_ros.nodes.recorder_node import RecorderNode
    from vla_r1_ros.nodes.reward_logger_node import RewardLoggerNode
    from vla_r1_ros.nodes.workcell_node import WorkcellNode

    context = ProcessContext(config, StandInWorkcell())
    if section == "perception":
        return PerceptionNode(context, source=StandInCamera())
    if section == "planning":
        return PlanningNode(context, arm=SimpleNamespace(name="stand-in", stop=lambda: None, gripper_opening_m=0.08))
    if section == "inference":
        node = InferenceNode(context)  # the scripted policy: loads in a moment, without the model
        deadline = time.monotonic() + 30.0
        while not node.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        assert node.ready, "the scripted policy did not load"
        return node
    if section == "reward_logger":
        return RewardLoggerNode(context, parameter_overrides=[Parameter("log_dir", value=str(tmp_path / "log"))])
    if section == "workcell":
        return WorkcellNode(context)
    if section == "recorder":
        return RecorderNode(context, parameter_overrides=[Parameter("bag_dir", value=str(tmp_path / "bag"))])
    raise AssertionError(f"no way to build the node of section {section!r}")


def test_every_section_of_nodes_yaml_is_one_of_our_nodes(config):
    assert set(config.nodes) == set(SECTIONS)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_a_node_declares_exactly_its_section_and_extras(ros, config, tmp_path, section):
    bare = Node("bare")  # what rclpy declares on every node (use_sim_time, ...)
    node = build_node(section, config, tmp_path)
    try:
        assert node.get_name() == section
        declared = set(node._parameters) - set(bare._parameters)
        expected = expected_defaults(config, section)
        assert declared == set(expected)
        # Extras never shadow a nodes.yaml key (one place per default).
        assert not set(node_defaults(config, section)) & set(SECTIONS[section](config))
        # The default's type is the declared type (YAML `15.0` a double, `30` an integer).
        overridden = {"reward_logger": {"log_dir"}, "recorder": {"bag_dir"}}.get(section, set())
        for name, default in expected.items():
            value = node.get_parameter(name).value
            assert type(value) is type(default), f"{section}.{name}: {value!r} is not a {type(default).__name__}"
            assert name in overridden or value == default, f"{section}.{name}: {value!r} != {default!r}"
    finally:
        destroy_node(node)
        bare.destroy_node()


# ---- (c) the launch sets only declared parameters, with their types --------------------------------

GRAPHS = (
    GraphArgs(),
    GraphArgs(camera="sim", executor="sim", policy="vla_r1", backend="openai", seed=3),
    GraphArgs(camera="realsense", executor="moveit", policy="vla_r1", quantization="nf4"),
    GraphArgs(camera="replay", executor="moveit", policy="vla_r1", recording="/tmp/recording.db3"),
    GraphArgs(camera="realsense_ros", executor="moveit", policy="vla_r1", use_rviz=True),
    GraphArgs(record=True),
)


@pytest.mark.parametrize("args", GRAPHS, ids=lambda a: f"{a.camera}-{a.policy}{'-record' if a.record else ''}")
def test_the_graph_sets_only_declared_parameters_of_their_type(config, args):
    checked = set()
    recorded = recording(args)
    for process in build_graph(args) + ([recorded.recorder_process()] if recorded else []):
        for spec in process.nodes:
            if not spec.node_class.startswith("vla_r1_ros."):
                continue  # another package's node (RealSense driver, robot_state_publisher, RViz)
            assert spec.node_class in NODES, f"{spec.node_class}: a node of ours this test does not know"
            section = NODES[spec.node_class][0]
            defaults = expected_defaults(config, section)
            undeclared = sorted(set(spec.parameters) - set(defaults))
            assert not undeclared, f"the graph sets {section} parameters it does not declare: {undeclared}"
            for name, value in spec.parameters.items():
                assert type(value) is type(defaults[name]), (
                    f"the graph sets {section}.{name} = {value!r}, the node declares a {type(defaults[name]).__name__}"
                )
            checked.add(section)
    assert {"planning", "inference", "reward_logger"} <= checked
