"""`vla-r1 export-dataset --format lerobot` end to end: a 3-trial simulated run, exported with lerobot
0.4.4's own writer in its isolated environment, loads back with lerobot's `LeRobotDataset`.

Slow: the first run builds the isolated environment (~2.5 min, ~8 GB; reused afterwards) and the
demo and the export take ~25 s. Nothing is mocked.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vla_r1_ros import lerobot_writer
from vla_r1_ros.cli.main import main
from vla_r1_ros.core import episodes

pytestmark = pytest.mark.slow


def test_export_loads_back_with_lerobot(tmp_path, capsys):
    log, out = tmp_path / "demo", tmp_path / "lerobot"
    assert main(["demo", "--trials", "3", "--seed", "0", "--out", str(log), "--no-report"]) == 0
    logged = episodes.read_index(log)
    capsys.readouterr()
    assert main(["export-dataset", str(log), str(out), "--format", "lerobot", "--repo-id", "test/demo"]) == 0
    printed = capsys.readouterr()
    assert "isolated environment" in printed.err
    summary = json.loads(printed.out)
    assert summary["episodes"] == len(logged) == 3 and not summary["skipped"]

    loaded = lerobot_writer.check_dataset(
        lerobot_writer.environment_python(lerobot_writer.environment_dir()), out, "test/demo"
    )
    assert json.loads((out / "meta" / "info.json").read_text())["codebase_version"] == "v3.0"
    assert loaded["codebase_version"] == "v3.0"
    assert loaded["episodes"] == 3 and loaded["frames"] == summary["frames"] == sum(loaded["episode_lengths"])
    assert loaded["tasks"] == sorted({entry["instruction"] for entry in logged})
    # Lerobot's first frame against the log's first episode.
    first, _ = loaded["first_and_last_frame"]
    document = episodes.load_episode(log, logged[0]["episode"])
    trajectory = document["plan"].get("joint_trajectory")
    expected_state = (
        trajectory["positions"][0]
        if trajectory
        else json.loads((log / "run_config.json").read_text())["config"]["workcell"]["robot"]["home_joints"]
    )
    np.testing.assert_allclose(first["observation.state"], expected_state, atol=1e-6)
    assert first["vla_r1.episode"] == logged[0]["episode"] and first["frame_index"] == 0
    assert first["vla_r1.answer.affordance"] == document["prediction"]["raw_texts"]["affordance"]
    assert first["observation.images.color"] == [3, 480, 640]
    color = cv2.cvtColor(
        cv2.imread(str(episodes.episode_dir(log, logged[0]["episode"]) / "color.png")), cv2.COLOR_BGR2RGB
    )
    assert first["observation.images.color.mean"] == pytest.approx(color.mean() / 255, abs=0.02)  # AV1, lossy
    judged_success = document["outcome"]["success"] and logged[0]["outcome_source"] != "none"
    assert first["next.done"] == (loaded["episode_lengths"][0] == 1)
    assert first["next.success"] == (judged_success and loaded["episode_lengths"][0] == 1)
    meta = json.loads((out / "meta" / "vla_r1.json").read_text())
    assert meta["episodes"] == [entry["episode"] for entry in logged]
