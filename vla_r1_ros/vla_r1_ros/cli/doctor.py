"""`vla-r1 doctor`: check a cell before a night of unattended trials (vla_r1_ros/doctor.py): camera,
extrinsics, tray, arm, gripper, log folder, DDS, model. Exit code 1 when any check fails.

In the simulator (the default) it checks the simulated cell through the same code; on a real cell
`--camera realsense --executor moveit --policy vla_r1` checks the parts a lab's launch runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vla_r1_ros.cameras import SOURCES, make_camera
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.geometry import CameraIntrinsics, camera_extrinsics
from vla_r1_ros.core.tray import TrayPose
from vla_r1_ros.doctor import (
    Check,
    DoctorSettings,
    Verdict,
    check_arm,
    check_arm_configuration,
    check_dds,
    check_decision,
    check_depth_fill,
    check_gripper,
    check_intrinsics,
    check_log_dir,
    check_table_plane,
    check_tray,
    format_checks,
    read_frames,
    workspace_pixels,
)
from vla_r1_ros.executors import EXECUTORS, make_executor
from vla_r1_ros.graph import DISCOVERY_RANGE_VARIABLE, GraphArgs, process_environment
from vla_r1_ros.policies import POLICIES

INSTRUCTION = "put the red cube in the tray"  # the model check's question: any instruction of the task


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", choices=SOURCES, default=GraphArgs.camera, help="camera source")
    parser.add_argument("--serial", default="", help="RealSense serial number (default: the only camera)")
    parser.add_argument("--recording", default="", help="--camera replay: the .db3 / .bag recording")
    parser.add_argument("--executor", choices=EXECUTORS, default=GraphArgs.executor, help="arm executor")
    parser.add_argument("--policy", choices=POLICIES, default=GraphArgs.policy, help="policy whose decision is timed")
    parser.add_argument("--model", default=GraphArgs.model, help="VLA-R1 checkpoint (policy vla_r1)")
    parser.add_argument("--log-dir", type=Path, default=Path(GraphArgs.log_dir), help="where episodes will go")
    parser.add_argument("--trials", type=int, default=1000, help="trials the log folder must have room for")
    parser.add_argument("--skip-model", action="store_true", help="do not load the model (a quick check)")
    parser.add_argument("--keystore", default=GraphArgs.keystore, help="the graph's SROS2 keystore (keystore:=)")


def run(args: argparse.Namespace) -> int:
    checks = run_doctor(args, PackageConfig.load())
    print(format_checks(checks))
    return 1 if any(check.verdict is Verdict.FAIL for check in checks) else 0


def run_doctor(args: argparse.Namespace, config: PackageConfig) -> list[Check]:
    """Build the parts the arguments name, as the graph would, and run every check on them."""
    settings = DoctorSettings.from_config(config.workspace)
    safety = config.workspace["safety"]
    workcell = None
    if args.camera == "sim" or args.executor == "sim":
        from vla_r1_ros.sim.workcell import Workcell

        workcell = Workcell(config)
        workcell.reset(GraphArgs.seed)
    checks = []
    try:
        camera = make_camera(
            args.camera,
            {"serial": args.serial, "recording": args.recording, "fps": 30},
            sim_workcell=lambda: workcell,
        )
        streaming, frames = read_frames(camera, settings)
        checks.append(streaming)
        if frames:
            frame = frames[-1]
            base_T_camera = camera_extrinsics(config.camera)
            table_z = float(safety["table_z"])
            checks += [
                check_intrinsics(frame, CameraIntrinsics.from_config(config.camera)),
                check_depth_fill(
                    frame,
                    workspace_pixels(
                        frame.intrinsics, base_T_camera, table_z, safety["workspace_min"], safety["workspace_max"]
                    ),
                    settings,
                ),
                check_table_plane(
                    frame, base_T_camera, table_z, safety["workspace_min"], safety["workspace_max"], settings
                ),
                check_tray(frame, base_T_camera, expected_tray(frame, config.workcell), table_z, settings),
            ]
        camera.stop()
        checks += arm_checks(args, config, workcell)
        checks.append(check_log_dir(args.log_dir, args.trials, settings.episode_bytes))
        # What the graph's processes will run with: this environment plus what the graph adds.
        range_ = os.environ.get(DISCOVERY_RANGE_VARIABLE) or GraphArgs.discovery_range
        checks.append(
            check_dds(os.environ | process_environment(GraphArgs(discovery_range=range_, keystore=args.keystore)))
        )
        if not args.skip_model:
            checks.append(check_decision(lambda: decide(args, config, frames, workcell)))
    finally:
        if workcell is not None:
            workcell.close()
    return checks


def expected_tray(frame, workcell_config) -> TrayPose:
    """Where the tray should be: where the simulator put it (its frame carries the scene), else where
    config/workcell.yaml says a real cell's tray stands."""
    scene = frame.extras.get("scene")
    if scene is not None:
        return TrayPose.of(scene.tray)
    return TrayPose.configured(workcell_config)


def arm_checks(args: argparse.Namespace, config: PackageConfig, workcell) -> list[Check]:
    """The names the config gives the arm, its joint state, and its empty gripper opened and closed."""
    try:
        arm = make_executor(args.executor, config, sim_workcell=lambda: workcell)
    except (ImportError, RuntimeError, ValueError) as exc:
        return [Check("arm", Verdict.FAIL, f"{args.executor}: {type(exc).__name__}: {exc}", _arm_fix(args.executor))]
    limits = arm.joint_limits()
    checks = [
        check_arm_configuration(args.executor, arm.configuration_problems()),
        check_arm(arm.joint_positions(), limits.lower, limits.upper, arm.joint_names),
    ]
    try:
        opened, closed = arm.cycle_gripper()
    except RuntimeError as exc:
        return [*checks, Check("gripper", Verdict.FAIL, str(exc), "check the gripper's controller and power")]
    min_held = min_held_width(args.executor, config)
    return [*checks, check_gripper(opened, closed, arm.gripper_opening_m, min_held)]


def _arm_fix(executor: str) -> str:
    if executor == "moveit":
        return "source the lab's ROS 2 + MoveIt install and start the robot's bring-up (docs/lab-setup.md)"
    return "check config/workcell.yaml"


def min_held_width(executor: str, config: PackageConfig) -> float:
    if executor == "moveit":
        return float(config.moveit_py["vla_r1"]["min_held_width_m"])
    return float(config.workcell["gripper"]["min_held_width_m"])


def decide(args: argparse.Namespace, config: PackageConfig, frames, workcell) -> tuple[bool, str]:
    """Load the policy and answer one instruction about the last frame: (parsed, the answer's start)."""
    from vla_r1_ros.core.parsing import parse_answer
    from vla_r1_ros.core.prompts import AFFORDANCE
    from vla_r1_ros.policies import make_policy

    if not frames:
        raise RuntimeError("no camera frame to decide on")
    if args.policy == "scripted":
        params = {"scene_source": workcell.scene if workcell is not None else None}
    else:
        params = {"model": args.model}
    policy = make_policy(args.policy, config, params)
    policy.load()
    (text,) = policy.predict(frames[-1].color, INSTRUCTION, [AFFORDANCE])
    parsed = parse_answer(text, AFFORDANCE)
    return parsed.ok, text if parsed.ok else f"{parsed.error}: {text}"
