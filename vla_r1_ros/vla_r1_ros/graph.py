"""The one description of the node graph.

`launch/demo.launch.py` (a lab's `ros2 launch vla_r1_ros demo.launch.py`) and `vla-r1 demo` (this
machine, no launch_ros) both call `build_graph(GraphArgs(...))` and start exactly the processes it
returns, so the two can never drift apart. Each `ProcessSpec.launch_kwargs()` is what the launch file
passes to `launch_ros.actions.Node`; `vla-r1 demo` turns the same kwargs into a subprocess command.

Processes: the simulated workcell lives in one process (PyBullet is in-process state), so with the
simulator the workcell node, the perception node (sim camera) and the planning node (sim arm) are
composed into one `stack` process with a multi-threaded executor, as a ROS 2 component container
would. The inference node and the reward logger always run as processes of their own, talking to the
rest over DDS; with a RealSense camera the perception node is its own process and respawns. With
`camera:=realsense_ros` the official realsense2_camera driver replaces the perception node: the graph
starts `realsense2_camera_node` as its `rs_launch.py` does (unless `camera_driver:=false`: a driver
the lab runs itself) and remaps every camera consumer to the driver's topics.
robot_state_publisher (the URDF) and RViz come from a lab's ROS install; `vla-r1 demo` lists them and
starts only this package's processes. robot_state_publisher runs only with `robot_description:=own`
(the default); with MoveIt's bring-up, which publishes its own /robot_description, use `external`.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vla_r1_ros.cameras import REPLAYED_SOURCES, SOURCES
from vla_r1_ros.core.config import package_share_path
from vla_r1_ros.core.episodes.layout import BAGS_DIR, OBJECT_REGISTRY_FILE, PLANNING_SPOOL_DIR
from vla_r1_ros.core.error_model import ErrorModelError, parse_error_model
from vla_r1_ros.core.outcomes import JUDGES
from vla_r1_ros.die_with_launcher import launch_prefix
from vla_r1_ros.executors import EXECUTORS
from vla_r1_ros.policies import PATH_CONVENTIONS, POLICIES
from vla_r1_ros.policies.settings import BACKENDS, QUANTIZATIONS

PACKAGE = "vla_r1_ros"
# The graph talks on this machine only unless `discovery_range` says otherwise: DDS discovery on the whole
# subnet would let anyone on the LAN send the goal that moves the arm. Jazzy's values of the variable.
DISCOVERY_RANGE_VARIABLE = "ROS_AUTOMATIC_DISCOVERY_RANGE"
DEFAULT_DISCOVERY_RANGE = "LOCALHOST"
DISCOVERY_RANGES = ("LOCALHOST", "SUBNET", "OFF", "SYSTEM_DEFAULT")

# Each package owns its registry; the graph adds only what is its own: `realsense_ros` is not a camera
# source of ours but Intel's driver in place of the perception node.
CAMERAS = (*SOURCES, "realsense_ros")

# Launch arguments, in the order `ros2 launch … --show-args` lists them.
ARGUMENT_HELP: dict[str, str] = {
    "camera": "camera source: sim (simulated workcell) | realsense (pyrealsense2) | realsense_ros (the "
    "realsense2_camera driver's topics) | replay",
    "camera_driver": "camera:=realsense_ros: start realsense2_camera_node: true | false (the lab runs the driver "
    "itself)",
    "policy": "scripted (simulator-only test expert, not the model) | vla_r1 (the model)",
    "executor": "sim (simulated Panda) | moveit (moveit_py on a real arm)",
    "model": "VLA-R1 checkpoint: local path or Hugging Face id in the local cache",
    "adapter": "LoRA adapter directory made for `model` (vla-r1 train-sft / train-grpo output/adapter); empty: none",
    "quantization": "auto (fastest measured for the device) | nf4 | int8 | int4_decode (CPU) | none",
    "backend": "vla_r1 backend: transformers (model in the inference node) | openai (a vLLM/SGLang server)",
    "server_url": "backend:=openai: the server's OpenAI-compatible base URL, e.g. http://gpu-host:8000/v1",
    "noise": "scripted policy error model: none | paper | key=value pairs (iou, rmse, wrong_object, parse_fail)",
    "path_convention": "scripted policy paths: carry (object -> place) | sharerobot (gripper -> object -> place)",
    "recording": "RealSense recording (.db3/.bag) for camera:=replay",
    "bag": "rosbag2 bag (its folder or .mcap) for camera:=bag: ours (record:=true) or realsense2_camera's topics",
    "record": "record the graph's topics into a rosbag2 MCAP bag under <log_dir>/bags (ros2 bag record -s mcap): "
    "true | false",
    "log_dir": "where the reward logger writes episodes",
    "seed": "simulator layout / policy seed: a non-negative integer",
    "use_rviz": "start RViz with the workcell view: true | false",
    "robot_description": "own (start robot_state_publisher with urdf/workcell.urdf) | external (another node, "
    "e.g. MoveIt's bring-up, already publishes /robot_description)",
    "discovery_range": "DDS discovery: LOCALHOST (this machine only) | SUBNET (a robot PC and a GPU host) | OFF | "
    "SYSTEM_DEFAULT",
    "judge": "who judges an executed trial: empty (the executor: the simulator, or nobody on a real arm) | vision "
    "(the camera judge, from the frame sets before and after the trial and the object registry)",
    "object_registry": "the objects the camera judge and the self-reset know (vla-r1 objects register); empty: "
    "<log_dir>/objects.json",
    "keystore": "SROS2 keystore folder: every process runs in its enclave of config/sros2_policy.xml with access "
    "control enforced (empty: security off)",
}

ROBOT_DESCRIPTIONS = ("own", "external")
# Launch's own spelling of booleans (launch.conditions `evaluate_condition_expression`), any case.
TRUE_STRINGS = ("true", "1")
FALSE_STRINGS = ("false", "0")


def _to_bool(name: str, text: str) -> bool:
    if text.lower() in TRUE_STRINGS + FALSE_STRINGS:
        return text.lower() in TRUE_STRINGS
    raise ValueError(f"{name}:={text!r} is not a boolean: use {', '.join(TRUE_STRINGS + FALSE_STRINGS)} (any case)")


def _to_str(_name: str, text: str) -> str:
    return text


def _to_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}:={text!r} is not an integer") from None


@dataclass(frozen=True)
class GraphArgs:
    """The launch arguments (`ros2 launch vla_r1_ros demo.launch.py camera:=… policy:=…`)."""

    camera: str = "sim"
    camera_driver: bool = True
    policy: str = "scripted"
    executor: str = "sim"
    model: str = "GigaAI-Research/vla-r1"
    adapter: str = ""
    quantization: str = "auto"
    backend: str = "transformers"
    server_url: str = "http://127.0.0.1:8000/v1"
    noise: str = "none"
    path_convention: str = "carry"
    recording: str = ""
    bag: str = ""
    record: bool = False
    log_dir: str = "runs/latest"
    seed: int = 0
    use_rviz: bool = False
    robot_description: str = "own"
    discovery_range: str = DEFAULT_DISCOVERY_RANGE
    keystore: str = ""
    judge: str = ""
    object_registry: str = ""

    def __post_init__(self) -> None:
        """Every value is checked here, with the argument's name and what it may be: a wrong launch
        argument stops the launch before any process starts."""
        choices = (
            ("camera", CAMERAS),
            ("policy", POLICIES),
            ("executor", EXECUTORS),
            ("quantization", QUANTIZATIONS),
            ("backend", BACKENDS),
            ("path_convention", PATH_CONVENTIONS),
            ("robot_description", ROBOT_DESCRIPTIONS),
            ("discovery_range", DISCOVERY_RANGES),
            ("judge", JUDGES),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}:={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name in ("camera_driver", "use_rviz", "record"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}:={getattr(self, name)!r} is not a boolean: use true or false")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            # numpy's generators (simulator layout, policy noise) take only non-negative seeds.
            raise ValueError(f"seed:={self.seed!r} is not a non-negative integer")
        for name in ("model", "log_dir"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name}:= is empty: {ARGUMENT_HELP[name]}")
        url = urlsplit(self.server_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"server_url:={self.server_url!r} is not an http:// or https:// URL with a host")
        try:
            parse_error_model(self.noise)
        except ErrorModelError as exc:
            raise ValueError(f"noise:={self.noise!r}: {exc}") from None
        if (self.camera == "sim") != (self.executor == "sim"):
            raise ValueError(
                "the simulated camera and the simulated arm go together: use camera:=sim with "
                "executor:=sim, or a real camera (realsense/replay/bag) with executor:=moveit"
            )
        if self.policy == "scripted" and self.camera != "sim":
            raise ValueError("policy:=scripted reads the simulator's ground truth: it needs camera:=sim")
        if self.camera == "replay" and not self.recording:
            raise ValueError("camera:=replay needs recording:=/path/to/recording.db3")
        if self.camera == "bag":
            self._check_bag()

    def _check_bag(self) -> None:
        """A bag without the camera topics a trial needs, or with an encoding the camera cannot take, is
        refused here, naming what is missing, before any process starts."""
        from vla_r1_ros.cameras.bag import BagError, bag_streams

        if not self.bag:
            raise ValueError("camera:=bag needs bag:=/path/to/bag (a rosbag2 folder or .mcap)")
        try:
            bag_streams(self.bag)
        except BagError as exc:
            raise ValueError(f"bag:={self.bag}: {exc}") from None

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> GraphArgs:
        """From launch-argument strings, the one parser of them (launch file, `stack`): each converted to
        its field's type, unknown names and unconvertible values refused with what is allowed."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown launch argument(s) {', '.join(unknown)}; the arguments are {', '.join(known)}")
        converted: dict[str, Any] = {}
        for key, text in values.items():
            text = str(text)
            converted[key] = {"bool": _to_bool, "int": _to_int}.get(known[key], _to_str)(key, text)
        return cls(**converted)

    def as_strings(self) -> dict[str, str]:
        return {
            f.name: str(getattr(self, f.name)).lower() if f.type == "bool" else str(getattr(self, f.name))
            for f in fields(self)
        }


# realsense2_camera's `rs_launch.py` defaults (realsense-ros ros2-master): the node `camera` in the
# namespace `camera`; it publishes on `~/<stream>/...`, i.e. /camera/camera/color/image_raw, and names
# its colour optical frame `<camera_name>_color_optical_frame` (config/camera.yaml frames.camera_optical).
REALSENSE_NAMESPACE = "camera"
REALSENSE_NAME = "camera"
# What the stack reads from a camera (as the perception node publishes it), relative to `camera/`.
CAMERA_STREAMS = ("color/image_raw", "aligned_depth_to_color/image_raw", "color/camera_info")
REALSENSE_FPS = 30  # the stream rate the pyrealsense2 source uses too (perception node `fps`)


def realsense_driver_remappings() -> tuple[tuple[str, str], ...]:
    """Our consumers' camera topics -> the realsense2_camera driver's."""
    return tuple((f"camera/{s}", f"/{REALSENSE_NAMESPACE}/{REALSENSE_NAME}/{s}") for s in CAMERA_STREAMS)


def realsense_driver_parameters() -> dict[str, Any]:
    """realsense2_camera_node parameters (the names of `rs_launch.py`'s arguments) for what the stack
    needs: colour rgb8 and depth at config/camera.yaml's image size, depth aligned to colour in one
    synced frameset (one stamp for both), the depth filters the pyrealsense2 source uses by default
    (spatial + temporal, no hole filling: lifting must see missing depth), and no TF: the camera's
    pose is the calibrated `extrinsics`, published from the URDF by robot_state_publisher."""
    from vla_r1_ros.core.config import load_config

    image = load_config("camera")["image"]
    profile = f"{int(image['width'])},{int(image['height'])},{REALSENSE_FPS}"
    return {
        "camera_name": REALSENSE_NAME,
        "enable_color": True,
        "enable_depth": True,
        "rgb_camera.color_profile": profile,
        "rgb_camera.color_format": "RGB8",
        "depth_module.depth_profile": profile,
        "depth_module.depth_format": "Z16",
        "align_depth.enable": True,
        "enable_sync": True,
        "spatial_filter.enable": True,
        "temporal_filter.enable": True,
        "hole_filling_filter.enable": False,
        "publish_tf": False,
    }


@dataclass(frozen=True)
class NodeSpec:
    name: str  # ROS node name
    node_class: str  # "module:Class" of the rclpy node
    executable: str  # console script that runs this node alone (setup.py entry point)
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    namespace: str = ""  # only for other packages' nodes (the RealSense driver); ours run in the root

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
    respawn_delay_s: float = 1.0  # a process that dies at start (an unwritable log) is not restarted in a loop
    # Another package's process the stack works without (TF and visualisation): when that package is not
    # installed the launch goes on without it, with a warning naming the apt package.
    optional: bool = False

    @property
    def composed(self) -> bool:
        return len(self.nodes) > 1

    def ros_arguments(self, args: GraphArgs) -> list[str]:
        return ["--enclave", enclave_of(self)] if args.keystore else []

    def launch_kwargs(self, args: GraphArgs) -> dict[str, Any]:
        """Keyword arguments for `launch_ros.actions.Node` — the launch file passes exactly these. Called by
        the process that starts the node (launch, `vla-r1 demo`): its `prefix` makes the node die with
        that process, however it ends (`die_with_launcher`); `exec_name` keeps launch's label for the
        process its own name (launch would otherwise name it after the prefix's first word, `python`)."""
        prefix = launch_prefix(os.getpid())
        if self.composed:
            # No `name`: launch_ros would pass `-r __node:=…` as a process-wide remap and rename every
            # composed node. Each composed node gets its own name inside `stack`.
            return {
                "package": self.package,
                "executable": "stack",
                "arguments": ["--process", self.name, *[f"{k}={v}" for k, v in args.as_strings().items()]],
                "respawn": self.respawn,
                "respawn_delay": self.respawn_delay_s,
                "prefix": prefix,
                "exec_name": self.name,
                "output": "screen",
                "additional_env": process_environment(args),
                "ros_arguments": self.ros_arguments(args),
            }
        node = self.nodes[0]
        return {
            "package": self.package,
            "executable": node.executable,
            "name": node.name,
            **({"namespace": node.namespace} if node.namespace else {}),
            "parameters": [dict(node.parameters)],
            "remappings": list(node.remappings),
            "arguments": list(node.arguments),
            "respawn": self.respawn,
            "respawn_delay": self.respawn_delay_s,
            "prefix": prefix,
            "exec_name": self.name,
            "output": "screen",
            "additional_env": process_environment(args),
            "ros_arguments": self.ros_arguments(args),
        }


def process_environment(args: GraphArgs) -> dict[str, str]:
    """What each process's environment adds (launch's `additional_env`): the discovery range, and with a
    keystore SROS2 enforcing the policy (each process in its enclave, `enclave_of`)."""
    env = {DISCOVERY_RANGE_VARIABLE: args.discovery_range}
    if args.keystore:
        env |= {
            "ROS_SECURITY_ENABLE": "true",
            "ROS_SECURITY_STRATEGY": "Enforce",
            "ROS_SECURITY_KEYSTORE": args.keystore,
        }
    return env


# `vla-r1 trials` (its trial client node) and the operator's console: not a process of the graph.
TRIALS_ENCLAVE = "/vla_r1/trials"


def enclave_of(process: ProcessSpec) -> str:
    """The SROS2 enclave a process runs in (config/sros2_policy.xml): one per process, as rclpy has one
    security context per process, so the nodes composed in `sim_stack` share one."""
    return f"/vla_r1/{process.name}"


def build_graph(args: GraphArgs) -> list[ProcessSpec]:
    """The processes of the VLA-R1 stack for these launch arguments."""
    # The one camera consumer: the planning node takes each trial's frame set (colour, depth, info).
    camera_topics = realsense_driver_remappings() if args.camera == "realsense_ros" else ()
    perception = NodeSpec(
        "perception",
        "vla_r1_ros.nodes.perception_node:PerceptionNode",
        "perception_node",
        # The simulator renders on the CPU (~70 ms a frame): 5 Hz leaves the other core for the graph.
        # A recording or a bag for trials loops at its recorded pace, as a camera streams: every goal,
        # however late, finds frames played after it.
        {"source": args.camera, "recording": args.recording, "bag": args.bag}
        | ({"rate_hz": 5.0} if args.camera == "sim" else {})
        | ({"repeat": True, "real_time": True} if args.camera in REPLAYED_SOURCES else {}),
    )
    planning = NodeSpec(
        "planning",
        "vla_r1_ros.nodes.planning_node:PlanningNode",
        "planning_node",
        # Only the simulator publishes a scene (ground truth) with each frame, and only a replay the
        # recorded stamp of each (playback-stamped) frame: a trial waits for them there.
        {
            "executor": args.executor,
            "scene": args.camera == "sim",
            "recorded_stamps": args.camera in REPLAYED_SOURCES,
            "spool_dir": str(Path(args.log_dir) / PLANNING_SPOOL_DIR),
            "judge": args.judge,
            "object_registry": args.object_registry or str(Path(args.log_dir) / OBJECT_REGISTRY_FILE),
        },
        remappings=camera_topics,
    )
    inference = NodeSpec(
        "inference",
        "vla_r1_ros.nodes.inference_node:InferenceNode",
        "inference_node",
        {
            "policy": args.policy,
            "model": args.model,
            "adapter": args.adapter,
            "quantization": args.quantization,
            "backend": args.backend,
            "server_url": args.server_url,
            "noise": args.noise,
            "path_convention": args.path_convention,
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
        # Respawned: a logger that dies loses nothing (the planning node keeps each record until the logger
        # confirms it, and the store writes each trial once), so the run goes on after a restart.
        ProcessSpec("reward_logger", (reward_logger,), respawn=True),
    ]
    # One publisher of /robot_description: two (ours and MoveIt's bring-up) would fight over it.
    if args.robot_description == "own":
        processes.append(
            ProcessSpec(
                "robot_state_publisher", (robot_state_publisher,), package="robot_state_publisher", optional=True
            )
        )
    if args.use_rviz:
        rviz = NodeSpec("rviz2", "", "rviz2", arguments=("-d", str(package_share_path("config", "demo.rviz"))))
        processes.append(ProcessSpec("rviz2", (rviz,), package="rviz2", optional=True))
    if args.camera == "sim":
        workcell = NodeSpec(
            "workcell", "vla_r1_ros.nodes.workcell_node:WorkcellNode", "workcell_node", {"seed": args.seed}
        )
        # Respawned like every process with the planning node in it: the finished trials it had not yet
        # seen logged wait in its spool and are delivered by the process started again.
        processes.insert(0, ProcessSpec("sim_stack", (workcell, perception, planning), respawn=True))
    elif args.camera == "realsense_ros":
        driver = NodeSpec(
            REALSENSE_NAME, "", "realsense2_camera_node", realsense_driver_parameters(), namespace=REALSENSE_NAMESPACE
        )
        started = (
            [ProcessSpec("realsense2_camera", (driver,), package="realsense2_camera")] if args.camera_driver else []
        )
        processes[:0] = [*started, ProcessSpec("planning", (planning,), respawn=True)]
    else:
        processes[:0] = [
            ProcessSpec("perception", (perception,), respawn=True),
            ProcessSpec("planning", (planning,), respawn=True),
        ]
    return processes


class MissingPackageError(RuntimeError):
    """A process the graph cannot run without belongs to a package that is not installed."""


# rosbag2's packages `ros2 bag record -s mcap` needs on a lab's Jazzy (its verb, and the MCAP storage).
ROSBAG2_PACKAGES = ("ros2bag", "rosbag2_storage_mcap")


@dataclass(frozen=True)
class Recording:
    """record:=true: the graph's topics into one rosbag2 bag (`metadata.yaml` + one `.mcap`). The launch runs
    rosbag2 itself (`ros2 bag record -s mcap`); `vla-r1 demo` / `trials`, where rosbag2 cannot be installed,
    run the package's recorder node (`nodes/recorder_node.py`) in its place, which writes the same folder."""

    bag_dir: str
    topics: tuple[str, ...]  # absolute names, as they appear in the bag

    def ros2_bag_record(self, args: GraphArgs) -> dict[str, Any]:
        """Keyword arguments of launch's `ExecuteProcess` (launch/launch/actions/execute_process.py, Jazzy):
        rosbag2's recorder, dying with the launch like every process of the graph."""
        return {
            "cmd": ["ros2", "bag", "record", "-s", "mcap", "-o", self.bag_dir, *self.topics],
            "name": "rosbag2_recorder",
            "prefix": launch_prefix(os.getpid()),
            "output": "screen",
            "additional_env": process_environment(args),
        }

    def recorder_process(self) -> ProcessSpec:
        node = NodeSpec(
            "recorder",
            "vla_r1_ros.nodes.recorder_node:RecorderNode",
            "recorder_node",
            {"bag_dir": self.bag_dir, "topics": list(self.topics)},
        )
        # Not respawned: a recorder that stopped (a full disk) stays stopped, and the run goes on without it.
        return ProcessSpec("recorder", (node,))

    def check_installed(self, installed: Callable[[str], bool]) -> None:
        """MissingPackageError naming the apt packages when rosbag2 cannot record MCAP here."""
        missing = [package for package in ROSBAG2_PACKAGES if not installed(package)]
        if missing:
            raise MissingPackageError(
                f"record:=true needs {', '.join(missing)}: sudo apt install {' '.join(map(apt_package, missing))}"
            )


def recording(args: GraphArgs, started_s: float | None = None) -> Recording | None:
    """The recording record:=true asks for: one bag a launch in `<log_dir>/bags`, named as rosbag2 names its
    own, after `started_s` (now); None without it. The
    topics are config/nodes.yaml's `recorder.topics` (what `ros2 bag record` records too), with
    camera:=realsense_ros the driver's camera topics in place of ours."""
    if not args.record:
        return None
    from vla_r1_ros.core.config import PackageConfig, node_defaults

    driver = dict(realsense_driver_remappings()) if args.camera == "realsense_ros" else {}
    recorded = node_defaults(PackageConfig.load(), "recorder")["topics"]
    name = time.strftime("rosbag2_%Y_%m_%d-%H_%M_%S", time.localtime(started_s))
    return Recording(
        str(Path(args.log_dir) / BAGS_DIR / name), tuple(driver.get(topic, f"/{topic}") for topic in recorded)
    )


def apt_package(package: str) -> str:
    """The Debian package of a ROS 2 Jazzy package (REP 2000 naming: ros-<distro>-<name, `_` as `-`>)."""
    return f"ros-jazzy-{package.replace('_', '-')}"


def installed_processes(
    processes: list[ProcessSpec], installed: Callable[[str], bool]
) -> tuple[list[ProcessSpec], list[str]]:
    """The processes whose package `installed` finds, and a warning for each optional one skipped. A
    missing package of a process the graph needs raises MissingPackageError before anything starts, so
    a launch never stops half-way with processes already running (ros2/launch#747)."""
    kept: list[ProcessSpec] = []
    warnings: list[str] = []
    for process in processes:
        if process.package == PACKAGE or installed(process.package):
            kept.append(process)
        elif process.optional:
            warnings.append(
                f"{process.package} is not installed: {process.name} is not started "
                f"(sudo apt install {apt_package(process.package)})"
            )
        else:
            raise MissingPackageError(
                f"{process.package} is not installed and the graph needs {process.name}: "
                f"sudo apt install {apt_package(process.package)}"
            )
    return kept, warnings


def find_process(args: GraphArgs, name: str) -> ProcessSpec:
    for process in build_graph(args):
        if process.name == name:
            return process
    raise KeyError(f"no process {name!r} in the graph for {args}")
