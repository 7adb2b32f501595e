"""`vla-r1 replay-plan` on an episode built from a real simulator frame: the logged answer re-plans
feasibly, another answer file is re-validated and refused by name, and the JSON is alone on stdout.

The episode is written by the real `EpisodeStore` from a rendered PyBullet frame (colour, aligned
depth, camera info) and the scripted expert's answer texts in the ShareRobot convention (the path
starts at the gripper), as the reward logger writes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_episodes import CAMERA_INFO, INTRINSICS  # the config camera: the one the simulator renders with

from vla_r1_ros.cli.main import main
from vla_r1_ros.core import prompts
from vla_r1_ros.core.config import PackageConfig, load_config
from vla_r1_ros.core.episodes import CameraFrame, EpisodeStore, TrialLog
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.scene import project_to_normalized
from vla_r1_ros.policies.scripted import ScriptedExpertPolicy

BASE_T_CAMERA = camera_extrinsics(load_config("camera"))
LOGGED_PLAN = {"feasible": False, "failed_check": "collision", "reason": "as logged by the trial"}


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    """(episode dir, target object, scene, intrinsics) of an episode logged from the workcell's seed-6 frame."""
    from vla_r1_ros.sim.workcell import Workcell

    with Workcell(PackageConfig.load()) as workcell:
        workcell.reset(6)
        frame, scene = workcell.capture()
    k = frame.intrinsics
    assert k == INTRINSICS
    target = next(o for o in scene.objects if o.bbox_px is not None)
    instruction = f"put the {target.colour} {target.shape} in the tray"
    expert = ScriptedExpertPolicy(PackageConfig.load().camera, path_convention="sharerobot")
    record = TrialLog(
        trial_id="trial-replay",
        instruction=instruction,
        stamp_ns=frame.stamp_ns,
        prediction=Prediction(
            instruction,
            prompts.TASKS,
            tuple(expert.answer(scene, instruction, t) for t in prompts.TASKS),
            (k.width, k.height),
        ),
        plan=LOGGED_PLAN,
        executed_ee_path=[],
        success=False,
        failure_stage="safety",
    )
    root = tmp_path_factory.mktemp("log")
    with EpisodeStore(root) as store:
        entry = store.write(record, CameraFrame(frame.color, frame.depth_mm, CAMERA_INFO))
    return root / "episodes" / entry["episode"], target, scene, k


def replay(capsys, *args) -> dict:
    assert main(["replay-plan", *map(str, args)]) == 0
    return json.loads(capsys.readouterr().out)


def trajectory_text(points_base, k) -> str:
    path = project_to_normalized(np.asarray(points_base, dtype=float), k, BASE_T_CAMERA)
    return prompts.format_answer("elsewhere", [tuple(p) for p in path])


def test_the_logged_answer_replans_feasibly_with_the_3d_pick_place_and_path(episode):
    folder, target, scene, _ = episode
    done = subprocess.run(
        [sys.executable, "-m", "vla_r1_ros.cli.main", "replay-plan", str(folder), "--seed", "6"],  # its layout
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
        check=True,
    )
    result = json.loads(done.stdout)  # one JSON object and nothing else on stdout
    assert result["feasible"] and result["failed_check"] is None and result["reason"] is None
    assert result["logged"] == LOGGED_PLAN
    # The pick is on the target's top; the ShareRobot path's gripper waypoint is not part of the transport.
    np.testing.assert_allclose(result["lifted"]["grasp_surface_point"], target.top_center, atol=0.01)
    assert result["lifted"]["pick_waypoint"] == 1 and len(result["lifted"]["surface_waypoints"]) == 5
    assert len(result["path"]) == 3
    np.testing.assert_allclose(result["pick"][:2], target.top_center[:2], atol=0.01)
    tray_xy, half = np.array(scene.tray.position[:2]), np.array(scene.tray.size[:2]) / 2
    assert np.all(np.abs(np.array(result["place"][:2]) - tray_xy) < half)
    np.testing.assert_allclose(result["path"][-1][:2], result["place"][:2])


def test_another_answer_is_revalidated_and_refused_by_name(episode, tmp_path, capsys):
    folder, target, _, k = episode
    # A trajectory from the object straight to a point 0.4 m away: a jump the step rule refuses.
    far = tmp_path / "far.txt"
    far.write_text(trajectory_text([target.top_center, target.top_center - np.array([0.0, 0.4, target.size[2]])], k))
    result = replay(capsys, folder, "--prediction", far)
    assert not result["feasible"] and result["failed_check"] == "step" and "jump" in result["reason"]
    assert result["pick"] is not None and len(result["path"]) == 1
    # A box on bare table (JSON {task: text}, as the episode's raw_texts): lifting finds no object.
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({prompts.AFFORDANCE: prompts.format_answer("nothing", (0.1, 0.9, 0.05, 0.05))}))
    result = replay(capsys, folder, "--prediction", bare)
    assert result["failed_check"] == "lift" and result["pick"] is None and not result["feasible"]


def test_unusable_inputs_are_usage_errors(episode, tmp_path, capsys):
    folder, *_ = episode
    assert main(["replay-plan", str(tmp_path / "episodes" / "000009")]) == 2
    assert "not a logged episode" in capsys.readouterr().err
    nonsense = tmp_path / "nonsense.txt"
    nonsense.write_text("I would rather not.")
    assert main(["replay-plan", str(folder), "--prediction", str(nonsense)]) == 2
    assert "parses as neither answer" in capsys.readouterr().err
