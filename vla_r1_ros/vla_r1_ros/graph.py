"""The one description of the node graph.

`launch/demo.launch.py` (a lab's `ros2 launch vla_r1_ros demo.launch.py`) and `vla-r1 demo` (this
machine, no launch_ros) both call `build_graph(GraphArgs(...))` and start exactly the processes it
returns, so the two can never drift apart. Each `ProcessSpec.launch_kwargs()` is what the launch file
passes to `launch_ros.actions.Node`; `vla-r1 demo` turns the same kwargs into a subprocess command.

Processes: the simulated workcell lives in one process (PyBullet is in-process state), so with the
simulator the workcell node, the perception node (sim camera) and the planning node (sim arm) are
composed into one `stack` process with a multi-threaded executor, as a ROS 2 component container
would. The inference node and the reward logger always run as processes of their own, talking to the
rest over DDS; with a RealSense camera the perception node is its own process and respawns.
robot_state_publisher (the URDF) and RViz come from a lab's ROS install; `vla-r1 demo` lists them and
starts only this package's processes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields
from typing import Any

from vla_r1_ros.core.config import package_share_path
from vla_r1_ros.policies.settings import BACKENDS

PACKAGE = "vla_r1_ros"

CAMERAS = ("sim", "realsense", "replay")
POLICIES = ("scripted", "vla_r1")
EXECUTORS = ("sim", "moveit")

# Launch arguments, in the order `ros2 launch … --show-args` lists them.
ARGUMENT_HELP: dict[str, str] = {
    "camera": "camera source: sim (simulated workcell) | realsense | replay",
    "policy": "scripted (simulator-only test expert, not the model) | vla_r1 (the model)",
    "executor": "sim (simulated Panda) | moveit (moveit_py on a real arm)",
    "model": "VLA-R1 checkpoint: local path or Hugging Face id in the local cache",
    "quantization": "auto (fastest measured for the device) | nf4 | int8 | none",
    "backend": "vla_r1 backend: transformers (model in the inference node) | openai (a vLLM/SGLang server)",
    "server_url": "backend:=openai: the server's OpenAI-compatible base URL, e.g. http://gpu-host:8000/v1",
    "noise": "scripted policy noise: none | paper",
    "recording": "RealSense recording (.db3/.bag) for camera:=replay",
    "log_dir": "where the reward logger writes episodes",
    "seed": "simulator layout / policy seed",
    "use_rviz": "start RViz with the workcell view",
}


@dataclass(frozen=True)
class GraphArgs:
    """The launch arguments (`ros2 launch vla_r1_ros demo.launch.py camera:=… policy:=…`)."""

    camera: str = "sim"
    policy: str = "scripted"
    executor: str = "sim"
    model: str = "GigaAI-Research/vla-r1"
    quantization: str = "auto"
    backend: str = "transformers"
    server_url: str = "http://127.0.0.1:8000/v1"
    noise: str = "none"
    recording: str = ""
    log_dir: str = "runs/latest"
    seed: int = 0
    use_rviz: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (("camera", CAMERAS), ("policy", POLICIES), ("executor", EXECUTORS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}:={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if (self.camera == "sim") != (self.executor == "sim"):
            raise ValueError(
                "the simulated camera and the simulated arm go together: use camera:=sim with "
                "executor:=sim, or a real camera (realsense/replay) with executor:=moveit"
            )
        if self.policy == "scripted" and self.camera != "sim":
            raise ValueError("policy:=scripted reads the simulator's ground truth: it needs camera:=sim")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend:={self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.camera == "replay" and not self.recording:
            raise ValueError("camera:=replay needs recording:=/path/to/recording.db3")

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> GraphArgs:
        """From launch-argument strings (unknown keys are an error)."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown graph arguments: {sorted(unknown)}")
        converted: dict[str, Any] = {}
        for key, text in values.items():
            if known[key] == "bool":
                converted[key] = str(text).lower() in ("1", "true", "yes", "on")
            elif known[key] == "int":
                converted[key] = int(text)
            else:
                converted[key] = str(text)
        return cls(**converted)

    def as_strings(self) -> dict[str, str]:
        return {
            f.name: str(getattr(self, f.name)).lower() if f.type == "bool" else str(getattr(self, f.name))
            for f in fields(self)
        }


@dataclass(frozen=True)
class NodeSpec:
    name: str  # ROS node name
    node_class: str  # "module:Class" of the rclpy node
    executable: str  # console script that runs this node alone (setup.py entry point)
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()

    def load_class(self) -> type:
        module, _, cls = self.node_class.partition(":")
        return getattr(importlib.import_module(module), cls)


@dataclass(frozen=True)
class ProcessSpec:
    """One OS process: a single node run by its own executable, or several composed by `stack`."""

    name: str
    nodes: tuple[NodeSpec, ...]
    respawn: bool = False
    package: str = PACKAGE

    @property
    def composed(self) -> bool:
        return len(self.nodes) > 1

    def launch_kwargs(self, args: GraphArgs) -> dict[str, Any]:
        """Keyword arguments for `launch_ros.actions.Node` — the launch file passes exactly these."""
        if self.composed:
            # No `name`: launch_ros would pass `-r __node:=…` as a process-wide remap and rename every
            # composed node. Each composed node gets its own name inside `stack`.
            return {
                "package": self.package,
                "executable": "stack",
                "arguments": ["--process", self.name, *[f"{k}={v}" for k, v in args.as_strings().items()]],
                "respawn": self.respawn,
                "output": "screen",
            }
        node = self.nodes[0]
        return {
            "package": self.package,
            "executable": node.executable,
            "name": node.name,
            "parameters": [dict(node.parameters)],
            "remappings": list(node.remappings),
            "arguments": list(node.arguments),
            "respawn": self.respawn,
            "output": "screen",
        }


def build_graph(args: GraphArgs) -> list[ProcessSpec]:
    """The processes of the VLA-R1 stack for these launch arguments."""
    perception = NodeSpec(
        "perception",
        "vla_r1_ros.nodes.perception_node:PerceptionNode",
        "perception_node",
        # The simulator renders on the CPU (~70 ms a frame): 5 Hz leaves the other core for the graph.
        {"source": args.camera, "recording": args.recording} | ({"rate_hz": 5.0} if args.camera == "sim" else {}),
    )
    planning = NodeSpec(
        "planning", "vla_r1_ros.nodes.planning_node:PlanningNode", "planning_node", {"executor": args.executor}
    )
    inference = NodeSpec(
        "inference",
        "vla_r1_ros.nodes.inference_node:InferenceNode",
        "inference_node",
        {
            "policy": args.policy,
            "model": args.model,
            "quantization": args.quantization,
            "backend": args.backend,
            "server_url": args.server_url,
            "noise": args.noise,
            "seed": args.seed,
        },
    )
    reward_logger = NodeSpec(
        "reward_logger",
        "vla_r1_ros.nodes.reward_logger_node:RewardLoggerNode",
        "reward_logger_node",
        {"log_dir": args.log_dir},
    )
    robot_state_publisher = NodeSpec(
        "robot_state_publisher",
        "",
        "robot_state_publisher",
        {"robot_description": package_share_path("urdf", "workcell.urdf").read_text()},
    )
    processes = [
        ProcessSpec("inference", (inference,)),
        ProcessSpec("reward_logger", (reward_logger,)),
        ProcessSpec("robot_state_publisher", (robot_state_publisher,), package="robot_state_publisher"),
    ]
    if args.use_rviz:
        rviz = NodeSpec("rviz2", "", "rviz2", arguments=("-d", str(package_share_path("config", "demo.rviz"))))
        processes.append(ProcessSpec("rviz2", (rviz,), package="rviz2"))
    if args.camera == "sim":
        workcell = NodeSpec(
            "workcell", "vla_r1_ros.nodes.workcell_node:WorkcellNode", "workcell_node", {"seed": args.seed}
        )
        processes.insert(0, ProcessSpec("sim_stack", (workcell, perception, planning)))
    else:
        processes[:0] = [ProcessSpec("perception", (perception,), respawn=True), ProcessSpec("planning", (planning,))]
    return processes


def find_process(args: GraphArgs, name: str) -> ProcessSpec:
    for process in build_graph(args):
        if process.name == name:
            return process
    raise KeyError(f"no process {name!r} in the graph for {args}")
