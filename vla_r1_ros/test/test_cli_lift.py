"""`vla-r1 lift` through real invocations: `vla-r1 parse` JSON in, lifted points out (the stable contract)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vla_r1_ros.core.config import config_dir, load_config
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.parsing import parse_answer
from vla_r1_ros.core.prompts import format_answer

_BESIDE_PYTHON = Path(sys.executable).with_name("vla-r1")
VLA_R1 = str(_BESIDE_PYTHON) if _BESIDE_PYTHON.exists() else shutil.which("vla-r1")
INTRINSICS = ["--fx", "600", "--fy", "600", "--cx", "320", "--cy", "240"]
W, H = 640, 480


def vla_r1(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    assert VLA_R1, "the vla-r1 console script is not installed"
    return subprocess.run([VLA_R1, *args], input=stdin, capture_output=True, text=True, timeout=60)


def parsed_json(task: str, output) -> str:
    """What `vla-r1 parse --task … --width 640 --height 480` prints for a model answer."""
    return json.dumps(parse_answer(format_answer("thinking", output), task).to_json(W, H))


@pytest.fixture
def depth_png(tmp_path) -> Path:
    """A wall 1.0 m away with a 10 cm-deep block in front of it (x 300..379, y 200..259) and a hole."""
    depth = np.full((H, W), 1000, np.uint16)
    depth[200:260, 300:380] = 900
    depth[20:40, 20:40] = 0
    path = tmp_path / "depth.png"
    assert cv2.imwrite(str(path), depth)
    return path


def block_box() -> tuple[float, float, float, float]:
    # Normalized centre box with some background around the block.
    return (340 / W, 230 / H, 110 / W, 90 / H)


def test_lifts_box_and_waypoints_in_the_camera_frame(depth_png):
    stdin = json.loads(parsed_json("affordance", block_box()))
    stdin["waypoints_px"] = [[100.0, 100.0], [320.0, 240.0]]  # both tasks' fields in one object
    result = vla_r1("lift", "--depth", str(depth_png), *INTRINSICS, stdin=json.dumps(stdin))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"ok", "reason", "grasp_camera", "surface_waypoints_camera"}
    assert out["ok"] is True and out["reason"] is None
    # The block's front face (what faces the camera) at its centre, not the wall behind it.
    np.testing.assert_allclose(
        out["grasp_camera"], [(339.5 - 320) / 600 * 0.9, (229.5 - 240) / 600 * 0.9, 0.9], atol=2e-3
    )
    np.testing.assert_allclose(
        out["surface_waypoints_camera"], [[-0.22 / 0.6 * 1.0, -0.14 / 0.6, 1.0], [0, 0, 0.9]], atol=2e-3
    )


def test_extrinsics_add_base_frame_points(depth_png):
    camera_yaml = config_dir() / "camera.yaml"
    result = vla_r1(
        "lift", "--depth", str(depth_png), *INTRINSICS, "--extrinsics", str(camera_yaml),
        stdin=parsed_json("trajectory", [(0.5, 0.5), (0.25, 0.25)]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["ok"] and out["grasp_camera"] is None and out["grasp_base"] is None
    expected = camera_extrinsics(load_config("camera")).apply(np.array(out["surface_waypoints_camera"]))
    np.testing.assert_allclose(out["surface_waypoints_base"], expected, atol=1e-9)


def test_lift_failures_are_reported_not_fatal(depth_png):
    hole = vla_r1(
        "lift", "--depth", str(depth_png), *INTRINSICS, stdin=parsed_json("trajectory", [(30 / W, 30 / H), (0.5, 0.5)])
    )
    assert hole.returncode == 0
    out = json.loads(hole.stdout)
    assert out["ok"] is False and "depth hole" in out["reason"] and "waypoint 0" in out["reason"]

    unparsed = json.dumps(parse_answer("no tags at all", "affordance").to_json(W, H))
    out = json.loads(vla_r1("lift", "--depth", str(depth_png), *INTRINSICS, stdin=unparsed).stdout)
    assert out["ok"] is False and out["reason"].startswith("the prediction did not parse")

    no_pixels = json.dumps(parse_answer(format_answer("t", block_box()), "affordance").to_json())
    out = json.loads(vla_r1("lift", "--depth", str(depth_png), *INTRINSICS, stdin=no_pixels).stdout)
    assert out["ok"] is False and "--width" in out["reason"]


def test_usage_errors_exit_2(depth_png, tmp_path):
    good = parsed_json("affordance", block_box())
    assert vla_r1("lift", "--depth", str(depth_png), "--fx", "600", stdin=good).returncode == 2
    assert vla_r1("lift", "--depth", str(depth_png), *INTRINSICS, stdin="not json").returncode == 2
    assert vla_r1("lift", "--depth", str(tmp_path / "missing.png"), *INTRINSICS, stdin=good).returncode == 2
    eight_bit = tmp_path / "colour.png"
    cv2.imwrite(str(eight_bit), np.zeros((H, W, 3), np.uint8))
    result = vla_r1("lift", "--depth", str(eight_bit), *INTRINSICS, stdin=good)
    assert result.returncode == 2 and "uint16" in result.stderr
    bad_extrinsics = tmp_path / "bad.yaml"
    bad_extrinsics.write_text("frames: {}\n")
    assert (
        vla_r1(
            "lift", "--depth", str(depth_png), *INTRINSICS, "--extrinsics", str(bad_extrinsics), stdin=good
        ).returncode
        == 2
    )


def test_lift_command_does_not_import_rclpy():
    code = "import vla_r1_ros.cli.lift, vla_r1_ros.core.lifting, vla_r1_ros.core.planning, sys\n"
    code += "assert 'rclpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
