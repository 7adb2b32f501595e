"""`vla-r1 doctor` passes on the simulated cell, and every check fails, with its fix, on the setting it
exists to catch: a camera that does not stream, a stream of another size, depth holes over the
workspace, extrinsics off by 5 cm, a tray that is not where it should be, an arm outside its limits,
a gripper that does not close, a log folder that cannot take a file or has no room, a graph open to
the subnet, a model that cannot load or answers nonsense. Frames are the simulator's rendered RGB-D."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace

import numpy as np
import pytest

from vla_r1_ros.cameras import make_camera
from vla_r1_ros.cli import doctor as doctor_cli
from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform, camera_extrinsics
from vla_r1_ros.core.tray import RIM_BAND_M, SCORE_CELL_M, _scores, measure_tray, yaw_difference_deg
from vla_r1_ros.doctor import (
    DoctorSettings,
    Verdict,
    base_points,
    check_arm,
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


@pytest.fixture(scope="module")
def cell(workcell, config):
    """A rendered frame of the simulated cell, the camera model and extrinsics, and where its tray is."""
    workcell.reset(3)
    frame, _scene = workcell.capture()
    frame.extras["scene"] = workcell.scene()
    safety = config.workspace["safety"]
    return {
        "frame": frame,
        "base_T_camera": camera_extrinsics(config.camera),
        "settings": DoctorSettings.from_config(config.workspace),
        "safety": safety,
        "tray": doctor_cli.expected_tray(frame, config.workcell),
    }


def doctor_args(tmp_path, **overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    doctor_cli.configure(parser)
    args = parser.parse_args(["--log-dir", str(tmp_path / "log"), "--trials", "10"])
    return argparse.Namespace(**(vars(args) | overrides))


def test_the_doctor_passes_on_the_simulated_cell(tmp_path, config, monkeypatch, capsys):
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)  # the graph's own default applies
    checks = doctor_cli.run_doctor(doctor_args(tmp_path), config)
    names = [check.name for check in checks]
    assert names == [
        "camera streams",
        "intrinsics",
        "depth fill",
        "extrinsics: table",
        "tray",
        "arm configuration",
        "arm joints",
        "gripper",
        "log folder",
        "DDS",
        "model",
    ]
    assert all(check.verdict is not Verdict.FAIL for check in checks), format_checks(checks)
    assert next(c for c in checks if c.name == "DDS").verdict is Verdict.WARN  # security off: said, not hidden
    assert doctor_cli.run(doctor_args(tmp_path, skip_model=True)) == 0
    assert "0 failed" in capsys.readouterr().out


def test_a_camera_that_does_not_stream_fails_with_its_fix(tmp_path, cell):
    camera = make_camera("replay", {"recording": str(tmp_path / "missing.db3")})
    check, frames = read_frames(camera, cell["settings"])
    assert check.verdict is Verdict.FAIL and frames == [] and "missing.db3" in check.detail and check.fix


def test_a_stream_of_another_size_fails(cell):
    configured = CameraIntrinsics(1280, 720, 900.0, 900.0, 640.0, 360.0)
    check = check_intrinsics(cell["frame"], configured)
    assert check.verdict is Verdict.FAIL and "stream 640x480" in check.detail and "1280x720" in check.detail


def test_depth_holes_over_the_workspace_fail(cell):
    frame, safety = cell["frame"], cell["safety"]
    workspace = workspace_pixels(
        frame.intrinsics, cell["base_T_camera"], safety["table_z"], safety["workspace_min"], safety["workspace_max"]
    )
    assert check_depth_fill(frame, workspace, cell["settings"]).verdict is Verdict.OK
    holes = frame.depth_mm.copy()
    holes[: holes.shape[0] // 2 + 40] = 0  # the far half of the table gives no depth
    check = check_depth_fill(replace(frame, depth_mm=holes), workspace, cell["settings"])
    assert check.verdict is Verdict.FAIL and "of the workspace's pixels have depth" in check.detail


def test_extrinsics_5_cm_off_fail_the_table_check(cell):
    safety = cell["safety"]
    args = (safety["table_z"], safety["workspace_min"], safety["workspace_max"])
    assert check_table_plane(cell["frame"], cell["base_T_camera"], *args, cell["settings"]).verdict is Verdict.OK
    raised = RigidTransform(
        cell["base_T_camera"].rotation, cell["base_T_camera"].translation + np.array([0.0, 0.0, 0.05])
    )
    check = check_table_plane(cell["frame"], raised, *args, cell["settings"])
    assert check.verdict is Verdict.FAIL and "table plane at z = +50 mm" in check.detail
    assert "calibrating-the-extrinsics" in check.fix


def test_a_tray_elsewhere_fails(cell):
    tray = cell["tray"]
    table_z = cell["safety"]["table_z"]
    assert check_tray(cell["frame"], cell["base_T_camera"], tray, table_z, cell["settings"]).verdict is Verdict.OK
    moved = replace(tray, centre=tray.centre * np.array([1.0, -1.0, 1.0]))  # where the config's other side is
    check = check_tray(cell["frame"], cell["base_T_camera"], moved, table_z, cell["settings"])
    assert check.verdict is Verdict.FAIL and "tray_when_unseen" in check.fix
    nudged = replace(tray, centre=tray.centre + np.array([0.04, 0.0, 0.0]))  # 4 cm off: found, but not there
    check = check_tray(cell["frame"], cell["base_T_camera"], nudged, table_z, cell["settings"])
    measured = [float(v) for v in re.search(r"measured at \(([-\d.]+), ([-\d.]+)\)", check.detail).groups()]
    assert check.verdict is Verdict.FAIL and np.linalg.norm(np.array(measured) - tray.centre[:2]) < 0.01


@pytest.mark.parametrize("seed", [3, 11, 24])
def test_the_tray_is_measured_from_depth_where_the_simulator_put_it(workcell, config, seed):
    """`core.tray.measure_tray` on rendered depth: the centre within 1 cm and the yaw within 2 deg of the
    simulator's tray, whichever side of the table the layout put it on."""
    workcell.reset(seed)
    frame, scene = workcell.capture()
    expected = doctor_cli.expected_tray(replace(frame, extras={"scene": scene}), config.workcell)
    points = base_points(frame, camera_extrinsics(config.camera))
    measured = measure_tray(points, expected, config.workspace["safety"]["table_z"])
    assert np.linalg.norm(measured.centre[:2] - expected.centre[:2]) < 0.01, (measured, expected)
    assert yaw_difference_deg(measured.yaw_rad, expected.yaw_rad) < 2.0
    assert measured.size[:2] == pytest.approx(expected.size[:2], abs=0.02)


def test_the_tray_score_counts_what_a_pass_over_every_point_counts():
    """`_scores` reads region counts off a summed-area table; for points no nearer than a grid cell to any
    region's edge this is exactly the direct count of the rim band and the floor (cleared here)."""
    rng = np.random.default_rng(0)
    half, yaw = np.array([0.12, 0.09]), 0.3
    centres = np.array([[0.45, 0.30], [0.47, 0.28], [0.40, 0.35]])
    xy = rng.uniform([0.25, 0.10], [0.65, 0.50], (20000, 2))
    standing = rng.random(20000) < 0.4
    c, s = np.cos(yaw), np.sin(yaw)
    edges = [half, half - RIM_BAND_M, half - RIM_BAND_M - 0.01]
    for centre in centres:  # keep only points clear of every centre's region edges
        local = np.abs((xy - centre) @ np.array([[c, -s], [s, c]]))
        clear = np.all([np.all(np.abs(local - edge) > 2 * SCORE_CELL_M, axis=1) for edge in edges], axis=0)
        xy, standing = xy[clear], standing[clear]
    expected = []
    for centre in centres:
        local = np.abs((xy - centre) @ np.array([[c, -s], [s, c]]))
        inside = np.all(local <= half, axis=1)
        rim = inside & np.any(local >= half - RIM_BAND_M, axis=1)
        floor = np.all(local < half - RIM_BAND_M - 0.01, axis=1)
        expected.append(standing[rim].mean() - standing[floor].mean())
    np.testing.assert_allclose(_scores(xy, standing, centres, yaw, half), expected, atol=1e-12)


def test_an_arm_outside_its_limits_or_without_a_state_fails():
    names = [f"panda_joint{i}" for i in range(1, 8)]
    lower, upper = np.full(7, -2.8), np.full(7, 2.8)
    assert check_arm(np.zeros(7), lower, upper, names).verdict is Verdict.OK
    outside = check_arm(np.array([0, 0, 0, 0, 0, 0, 2.9]), lower, upper, names)
    assert outside.verdict is Verdict.FAIL and "panda_joint7" in outside.detail
    assert check_arm(np.full(7, np.nan), lower, upper, names).verdict is Verdict.FAIL


def test_a_gripper_that_does_not_close_or_open_fails(workcell):
    from vla_r1_ros.executors.sim import SimArmExecutor

    arm = SimArmExecutor(workcell)
    opened, closed = arm.cycle_gripper()  # the simulated hand, empty
    assert check_gripper(opened, closed, arm.gripper_opening_m, arm.min_held_width_m).verdict is Verdict.OK
    stuck = check_gripper(opened, 0.02, arm.gripper_opening_m, arm.min_held_width_m)
    assert stuck.verdict is Verdict.FAIL and "an empty grasp would count as holding" in stuck.detail
    assert check_gripper(0.03, closed, arm.gripper_opening_m, arm.min_held_width_m).verdict is Verdict.FAIL


def test_a_log_folder_without_a_file_or_room_fails(tmp_path):
    (tmp_path / "file").write_text("")
    unwritable = check_log_dir(tmp_path / "file" / "log", 10, 1_600_000)
    assert unwritable.verdict is Verdict.FAIL and str(tmp_path / "file" / "log") in unwritable.detail
    assert check_log_dir(tmp_path / "log", 10, 1_600_000).verdict is Verdict.OK
    no_room = check_log_dir(tmp_path / "log", 10**9, 1_600_000)
    assert no_room.verdict is Verdict.FAIL and "trials need about" in no_room.detail


def test_a_graph_open_to_the_subnet_fails_and_enforced_security_needs_its_keystore(tmp_path):
    open_graph = check_dds({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})
    assert open_graph.verdict is Verdict.FAIL and "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in open_graph.fix
    enforced = {"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_STRATEGY": "Enforce"}
    enforced["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"  # SROS2 guards a subnet graph
    assert check_dds(enforced | {"ROS_SECURITY_KEYSTORE": str(tmp_path / "none")}).verdict is Verdict.FAIL
    assert check_dds(enforced | {"ROS_SECURITY_KEYSTORE": str(tmp_path)}).verdict is Verdict.OK


def test_a_model_that_cannot_load_or_answers_nonsense_fails():
    def cannot_load():
        raise OSError("/models/vla-r1 is not a checkpoint")

    failed = check_decision(cannot_load)
    assert failed.verdict is Verdict.FAIL and "not a checkpoint" in failed.detail and "config/model.yaml" in failed.fix
    nonsense = check_decision(lambda: (False, "no <output> block: hello"))
    assert nonsense.verdict is Verdict.FAIL and "unparsable" in nonsense.detail
