"""`vla-r1 doctor`: is this cell ready for a night of unattended trials? A table of checks, each failure
with its fix, run against the same parts a trial uses (camera source, arm executor, policy, log folder).

Each check is a plain function of what it looks at (frames, the camera model and extrinsics of
config/camera.yaml, the tray's pose, the arm, the environment) returning a `Check`; `run_checks` runs
them in order on the parts the command built. Thresholds are in config/workspace.yaml `doctor:`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from vla_r1_ros.cameras.base import CameraSource, RgbdFrame
from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform
from vla_r1_ros.core.lifting import LiftError, fit_plane
from vla_r1_ros.core.tray import TrayNotFound, TrayPose, TrayTolerance, compare_tray, measure_tray
from vla_r1_ros.graph import DEFAULT_DISCOVERY_RANGE, DISCOVERY_RANGE_VARIABLE


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but a lab should know (e.g. DDS security off on a localhost-only graph)
    FAIL = "fail"  # a night would go wrong: fix first


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str  # what was measured
    fix: str = ""  # what to do about it (empty when ok)


@dataclass(frozen=True)
class DoctorSettings:
    frames: int  # frames read from the camera
    read_timeout_s: float  # per frame
    min_depth_fill: float  # fraction of pixels with depth
    table_tolerance_m: float  # the table plane seen in depth vs the configured table height
    max_table_tilt_deg: float
    tray_tolerance: TrayTolerance  # the measured tray vs the expected one (the planning node's too)
    episode_bytes: int  # disk one logged trial takes (PNGs + JSON), for the room check

    @classmethod
    def from_config(cls, workspace_config: Mapping[str, Any]) -> DoctorSettings:
        doctor = workspace_config["doctor"]
        return cls(
            frames=int(doctor["frames"]),
            read_timeout_s=float(doctor["read_timeout_s"]),
            min_depth_fill=float(doctor["min_depth_fill"]),
            table_tolerance_m=float(doctor["table_tolerance_m"]),
            max_table_tilt_deg=float(doctor["max_table_tilt_deg"]),
            tray_tolerance=TrayTolerance.from_config(workspace_config),
            episode_bytes=int(doctor["episode_bytes"]),
        )


CALIBRATION_DOC = "docs/planning.md#calibrating-the-extrinsics"


def read_frames(camera: CameraSource, settings: DoctorSettings) -> tuple[Check, list[RgbdFrame]]:
    """Start the camera and read `settings.frames` frames."""
    frames: list[RgbdFrame] = []
    started = time.monotonic()
    try:
        camera.start()
        for _ in range(settings.frames):
            frame = camera.read(settings.read_timeout_s)
            if frame is None:
                break
            frames.append(frame)
    except Exception as exc:  # whatever a broken source raises is the finding
        return Check(
            "camera streams", Verdict.FAIL, f"{camera.name}: {type(exc).__name__}: {exc}", _camera_fix(camera)
        ), []
    elapsed = time.monotonic() - started
    if len(frames) < settings.frames:
        return Check(
            "camera streams",
            Verdict.FAIL,
            f"{camera.name}: {len(frames)} of {settings.frames} frames, then nothing for {settings.read_timeout_s} s",
            _camera_fix(camera),
        ), frames
    return Check("camera streams", Verdict.OK, f"{camera.name}: {len(frames)} frames in {elapsed:.1f} s"), frames


def _camera_fix(camera: CameraSource) -> str:
    if camera.name == "realsense":
        return (
            "check the USB 3 cable and port (`rs-enumerate-devices`), the `serial` parameter, and that no other "
            "process holds the camera"
        )
    return "check the camera source and its parameters (perception node `source`, `recording`)"


def check_intrinsics(frame: RgbdFrame, configured: CameraIntrinsics) -> Check:
    """The stream's size is the configured image size, and its camera model is a plausible one."""
    k = frame.intrinsics
    size = (k.width, k.height)
    if size != (configured.width, configured.height) or frame.depth_mm.shape != (k.height, k.width):
        return Check(
            "intrinsics",
            Verdict.FAIL,
            f"stream {k.width}x{k.height}, depth {frame.depth_mm.shape[1]}x{frame.depth_mm.shape[0]}, "
            f"config/camera.yaml image {configured.width}x{configured.height}",
            "set the camera's colour profile to the configured size (or change config/camera.yaml `image`), "
            "depth aligned to colour",
        )
    if not (k.fx > 0 and k.fy > 0 and 0 < k.cx < k.width and 0 < k.cy < k.height):
        return Check(
            "intrinsics",
            Verdict.FAIL,
            f"fx={k.fx:.1f} fy={k.fy:.1f} cx={k.cx:.1f} cy={k.cy:.1f}",
            "the camera reports no usable calibration: recalibrate it (`rs-enumerate-devices -c`)",
        )
    return Check("intrinsics", Verdict.OK, f"{k.width}x{k.height}, fx={k.fx:.1f} fy={k.fy:.1f}")


def workspace_pixels(
    intrinsics: CameraIntrinsics,
    base_T_camera: RigidTransform,
    table_z: float,
    workspace_min: Sequence[float],
    workspace_max: Sequence[float],
) -> np.ndarray:
    """(H, W) mask of the pixels whose ray meets the table plane inside the workspace: what the camera
    must see for a trial (the rest of the image may be wall, floor or out of range)."""
    v, u = np.mgrid[0 : intrinsics.height, 0 : intrinsics.width]
    rays = base_T_camera.rotation.apply(intrinsics.deproject(u.ravel(), v.ravel(), np.ones(u.size)))
    origin = base_T_camera.translation
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = (table_z - origin[2]) / rays[:, 2]
    hits = origin[:2] + reach[:, None] * rays[:, :2]
    lo, hi = np.asarray(workspace_min, float)[:2], np.asarray(workspace_max, float)[:2]
    inside = (reach > 0) & np.all((hits >= lo) & (hits <= hi), axis=1)
    return inside.reshape(intrinsics.height, intrinsics.width)


def check_depth_fill(frame: RgbdFrame, workspace: np.ndarray, settings: DoctorSettings) -> Check:
    """Depth over the workspace (`workspace_pixels`): holes there are where lifting fails."""
    if not workspace.any():
        return Check(
            "depth fill",
            Verdict.FAIL,
            "the workspace is not in the camera's view",
            f"point the camera at the table; check its extrinsics ({CALIBRATION_DOC})",
        )
    fill = float(np.count_nonzero(frame.depth_mm[workspace])) / int(workspace.sum())
    if fill < settings.min_depth_fill:
        return Check(
            "depth fill",
            Verdict.FAIL,
            f"{fill:.0%} of the workspace's pixels have depth (need {settings.min_depth_fill:.0%})",
            "clean the camera window, switch the emitter on, keep shiny or black surfaces out of view; the "
            "depth filters (perception node `spatial_filter`, `temporal_filter`) help with small holes",
        )
    return Check("depth fill", Verdict.OK, f"{fill:.0%} of the workspace's pixels have depth")


def base_points(frame: RgbdFrame, base_T_camera: RigidTransform) -> np.ndarray:
    v, u = np.nonzero(frame.depth_mm)
    depth_m = frame.depth_mm[v, u].astype(float) / 1000.0
    return base_T_camera.apply(frame.intrinsics.deproject(u.astype(float), v.astype(float), depth_m))


def check_table_plane(
    frame: RgbdFrame,
    base_T_camera: RigidTransform,
    table_z: float,
    workspace_min: Sequence[float],
    workspace_max: Sequence[float],
    settings: DoctorSettings,
) -> Check:
    """The extrinsics put the table where config says: the plane most depth points inside the workspace
    lie on (the table top) is at `table_z` and level."""
    points = base_points(frame, base_T_camera)
    lo, hi = np.asarray(workspace_min, float), np.asarray(workspace_max, float)
    inside = points[np.all((points[:, :2] >= lo[:2]) & (points[:, :2] <= hi[:2]), axis=1)]
    fix = f"recalibrate the camera's extrinsics ({CALIBRATION_DOC}), or correct `table_z` in config/workspace.yaml"
    if len(inside) < 100:
        return Check("extrinsics: table", Verdict.FAIL, f"{len(inside)} depth points over the workspace", fix)
    try:
        centre, normal = fit_plane(inside[:: max(1, len(inside) // 20000)], 0.005, np.random.default_rng(0))
    except LiftError:
        return Check("extrinsics: table", Verdict.FAIL, "no plane fits the depth over the workspace", fix)
    normal = normal if normal[2] >= 0 else -normal
    tilt = float(np.degrees(np.arccos(np.clip(normal[2], -1.0, 1.0))))
    mid = (lo[:2] + hi[:2]) / 2
    height = float(centre[2] - (normal[:2] @ (mid - centre[:2])) / normal[2]) if normal[2] > 1e-6 else np.inf
    detail = f"table plane at z = {height * 1000:+.0f} mm (config {table_z * 1000:+.0f} mm), tilted {tilt:.1f} deg"
    if abs(height - table_z) > settings.table_tolerance_m or tilt > settings.max_table_tilt_deg:
        return Check("extrinsics: table", Verdict.FAIL, detail, fix)
    return Check("extrinsics: table", Verdict.OK, detail)


def check_tray(
    frame: RgbdFrame, base_T_camera: RigidTransform, tray: TrayPose, table_z: float, settings: DoctorSettings
) -> Check:
    """The tray stands where it is expected: measured from depth (`core.tray.measure_tray`), its centre
    and yaw are within the tolerances of the expected pose."""
    fix = (
        "put the tray where config/workcell.yaml `collision.tray_when_unseen` says, or measure it and write its "
        f"pose there; if it is there, recalibrate the extrinsics ({CALIBRATION_DOC})"
    )
    where = f"tray expected at ({tray.centre[0]:.3f}, {tray.centre[1]:.3f}) m"
    try:
        measured = measure_tray(base_points(frame, base_T_camera), tray, table_z)
    except TrayNotFound as exc:
        return Check("tray", Verdict.FAIL, f"{where}: {exc}", fix)
    comparison = compare_tray(measured, tray, settings.tray_tolerance)
    detail = comparison.describe(measured, tray)
    if not comparison.within:
        return Check("tray", Verdict.FAIL, detail, fix)
    return Check("tray", Verdict.OK, detail)


def check_arm(joints: np.ndarray, lower: np.ndarray, upper: np.ndarray, names: Sequence[str]) -> Check:
    joints = np.asarray(joints, float)
    if joints.shape != (len(names),) or not np.all(np.isfinite(joints)):
        return Check(
            "arm joints",
            Verdict.FAIL,
            f"joint state {joints.tolist()} for joints {list(names)}",
            "no complete joint state: check the robot driver and its /joint_states",
        )
    outside = [n for n, q, lo, hi in zip(names, joints, lower, upper, strict=True) if not lo <= q <= hi]
    if outside:
        return Check(
            "arm joints",
            Verdict.FAIL,
            f"outside their limits: {', '.join(outside)}",
            "move the arm inside its limits (the driver's guiding mode), then home it",
        )
    return Check("arm joints", Verdict.OK, f"{len(names)} joints inside their limits")


def check_arm_configuration(executor: str, problems: Sequence[str]) -> Check:
    """The names the executor's config uses (groups, links, named states, controllers) exist on the arm."""
    if problems:
        return Check(
            "arm configuration",
            Verdict.FAIL,
            "; ".join(problems),
            "make config/moveit_py.yaml `vla_r1` name the robot's SRDF groups, links and states, and start "
            "its controllers (ros2 control list_controllers)"
            if executor == "moveit"
            else "check config/workcell.yaml",
        )
    return Check("arm configuration", Verdict.OK, "every group, link, named state and controller the config names")


def check_gripper(open_m: float, closed_m: float, opening_m: float, min_held_m: float) -> Check:
    """An empty gripper opened and closed: it opens to its opening and closes to below what means held."""
    detail = f"opened to {open_m * 1000:.0f} mm (of {opening_m * 1000:.0f}), closed empty to {closed_m * 1000:.0f} mm"
    if open_m < 0.8 * opening_m:
        return Check("gripper", Verdict.FAIL, detail, "the gripper does not open fully: home it (franka_gripper)")
    if closed_m >= min_held_m:
        return Check(
            "gripper",
            Verdict.FAIL,
            detail + f" (≥ {min_held_m * 1000:.0f} mm: an empty grasp would count as holding)",
            "clear the fingers; check the finger joint states and `min_held_width_m` in the config",
        )
    return Check("gripper", Verdict.OK, detail)


def check_log_dir(log_dir: Path, trials: int, episode_bytes: int) -> Check:
    """The log folder takes a file, and has room for `trials` episodes."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=log_dir, prefix=".doctor-") as probe:
            probe.write(b"x")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return Check(
            "log folder", Verdict.FAIL, f"{log_dir}: {exc.strerror or exc}", "choose a writable `log_dir` / --out"
        )
    free = shutil.disk_usage(log_dir).free
    need = trials * episode_bytes
    detail = f"{log_dir}: {free / 1e9:.1f} GB free, {trials} trials need about {need / 1e9:.1f} GB"
    if free < need:
        return Check("log folder", Verdict.FAIL, detail, "free space, or log to another disk")
    return Check("log folder", Verdict.OK, detail)


def check_dds(env: Mapping[str, str]) -> Check:
    """Who can reach the graph: the discovery range it gets (`graph.DEFAULT_DISCOVERY_RANGE` unless the
    environment names one), and whether SROS2 enforces its policy."""
    discovery = env.get(DISCOVERY_RANGE_VARIABLE, "") or f"{DEFAULT_DISCOVERY_RANGE} (the graph's default)"
    secured = env.get("ROS_SECURITY_ENABLE", "").lower() == "true" and env.get("ROS_SECURITY_STRATEGY") == "Enforce"
    keystore = env.get("ROS_SECURITY_KEYSTORE", "")
    if secured and not (keystore and Path(keystore).is_dir()):
        return Check(
            "DDS",
            Verdict.FAIL,
            f"security enforced with keystore {keystore or '(unset)'}, which is not a folder",
            "create it: `ros2 security create_keystore` and the enclaves (docs/lab-setup.md)",
        )
    detail = f"discovery {discovery}; security {'enforced' if secured else 'off'}"
    if secured or discovery.startswith(("LOCALHOST", "OFF")):
        return Check("DDS", Verdict.OK if secured else Verdict.WARN, detail, "" if secured else "enable SROS2")
    return Check(
        "DDS",
        Verdict.FAIL,
        detail + ": anyone on the network can send the goal that moves the arm",
        f"export {DISCOVERY_RANGE_VARIABLE}={DEFAULT_DISCOVERY_RANGE}, or enforce SROS2 (ROS_SECURITY_ENABLE=true, "
        "ROS_SECURITY_STRATEGY=Enforce)",
    )


def check_decision(decide: Callable[[], tuple[bool, str]]) -> Check:
    """Load the policy and time one decision on a captured frame; `decide()` says whether its answer
    parsed, and what it was."""
    started = time.monotonic()
    try:
        parsed, what = decide()
    except Exception as exc:  # a model that cannot load or answer is the finding
        return Check(
            "model",
            Verdict.FAIL,
            f"{type(exc).__name__}: {exc}",
            "check config/model.yaml `model` (a local checkpoint: the hub may be unreachable) and the GPU",
        )
    seconds = time.monotonic() - started
    if not parsed:
        return Check(
            "model",
            Verdict.FAIL,
            f"answered in {seconds:.1f} s, unparsable: {what[:200]}",
            "the checkpoint is not a VLA-R1 model, or its prompt settings differ",
        )
    return Check("model", Verdict.OK, f"loaded and decided in {seconds:.1f} s: {what[:80]}")


def format_checks(checks: Sequence[Check]) -> str:
    width = max(len(check.name) for check in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.verdict.value.upper():4}  {check.name:{width}}  {check.detail}")
        if check.fix:
            lines.append(f"{'':4}  {'':{width}}  fix: {check.fix}")
    failed = sum(check.verdict is Verdict.FAIL for check in checks)
    lines.append(f"{len(checks)} checks, {failed} failed" + (": fix those before a night" if failed else ""))
    return "\n".join(lines)
