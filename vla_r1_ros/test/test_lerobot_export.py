"""`export-dataset --format lerobot`, the project's side: the intermediate lerobot's writer reads (what a
frame is, the outcome columns, the depth video), the isolated environment's key, and the refusals.
lerobot itself runs in test_lerobot_dataset.py (slow: it needs the isolated environment)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_episodes import frame, trial

from vla_r1_ros import lerobot_writer
from vla_r1_ros.cli.main import main
from vla_r1_ros.core import episodes, lerobot_export, prompts
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.episodes import EpisodeStore, References, ReferenceSource
from vla_r1_ros.core.lerobot_export import LeRobotExportError, LeRobotSettings, build_intermediate

JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
HOME = [0.0, -0.785398, 0.0, -2.356194, 0.0, 1.570796, 0.785398]
PATH = [[0.01 * step + 0.1 * joint for joint in range(7)] for step in range(4)]  # 4 commanded points
SETTINGS = LeRobotSettings.from_config(PackageConfig.load().dataset["lerobot"])


def commanded(record, positions=PATH):
    return replace(record, plan={"feasible": True, "joint_trajectory": {"joint_names": JOINTS, "positions": positions}})


def write_run_config(root, executor):
    config = {
        "nodes": {"planning": {"ros__parameters": {"executor": executor}}},
        "workcell": {"robot": {"home_joints": HOME}},
    }
    (root / lerobot_export.RUN_CONFIG_FILE).write_text(json.dumps({"config": config}))


@pytest.fixture
def log(tmp_path):
    """A simulated run: a judged success, a judged grasp failure, a trial refused at collision (no
    commanded path), and an executed trial nobody judged that the arm reported as a success."""
    root = tmp_path / "log"
    references = References(ReferenceSource.SIMULATOR, (0.4, 0.4, 0.1, 0.1), ((0.4, 0.4), (0.2, 0.2)))
    with EpisodeStore(root) as store:
        store.write(commanded(replace(trial(), outcome_source="simulator")), frame(), references)
        failed = replace(trial(success=False, instruction="put the blue cube in the tray"), outcome_source="simulator")
        store.write(commanded(failed), frame(), references)
        refused = replace(trial(success=False), failure_stage="collision", outcome_source="pipeline")
        store.write(refused, frame(), references)
        store.write(commanded(replace(trial(), outcome_source="none")), frame(), references)
    write_run_config(root, "sim")
    return root


def episode(directory, index):
    with np.load(directory / f"episode_{index:06d}.npz") as arrays:
        return {key: arrays[key] for key in arrays}


def test_one_episode_per_trial_one_frame_per_commanded_step(log, tmp_path):
    directory = tmp_path / "intermediate"
    summary = build_intermediate(log, directory, SETTINGS)
    manifest = json.loads((directory / lerobot_export.MANIFEST_FILE).read_text())
    assert [e["source"] for e in manifest["episodes"]] == ["000001", "000002", "000003", "000004"]
    assert [e["frames"] for e in manifest["episodes"]] == [3, 3, 1, 3]
    assert manifest["episodes"][1]["task"] == "put the blue cube in the tray"
    assert (summary.episodes, summary.frames, summary.refused_before_motion) == (4, 10, 1)
    first = episode(directory, 0)
    # state = commanded point t, action = commanded point t + 1.
    np.testing.assert_allclose(first["observation.state"], np.float32(PATH[:3]))
    np.testing.assert_allclose(first["action"], np.float32(PATH[1:]))
    assert manifest["features"]["action"]["names"] == JOINTS and manifest["features"]["action"]["shape"] == [7]
    np.testing.assert_array_equal(first["observation.images.color"], frame().color)
    assert first["vla_r1.answer.affordance"][0] == trial().raw_texts[prompts.AFFORDANCE]
    assert first["vla_r1.commanded"].all() and first["vla_r1.episode"][0] == "000001"


def test_only_a_judged_success_is_a_success(log, tmp_path):
    directory = tmp_path / "intermediate"
    summary = build_intermediate(log, directory, SETTINGS)
    success, failure, refused, unjudged = (episode(directory, i) for i in range(4))
    # lerobot_eval's columns: done on the last frame; success and reward 1 there on a success only.
    assert success["next.done"][:, 0].tolist() == [False, False, True]
    assert success["next.success"][:, 0].tolist() == [False, False, True]
    assert success["next.reward"][:, 0].tolist() == [0.0, 0.0, 1.0]
    assert not failure["next.success"].any() and failure["next.reward"].sum() == 0 and failure["vla_r1.judged"].all()
    # The arm said success, nobody judged it: not a success, and flagged.
    assert not unjudged["next.success"].any() and unjudged["next.reward"].sum() == 0
    assert not unjudged["vla_r1.judged"].any() and unjudged["vla_r1.outcome_source"][0] == "none"
    assert (summary.judged, summary.successes, summary.not_judged) == (3, 1, 1)
    # Refused before motion: one frame at the simulated arm's configured start, judged a failure.
    np.testing.assert_allclose(refused["observation.state"], [HOME])
    np.testing.assert_allclose(refused["action"], [HOME])
    assert not refused["vla_r1.commanded"].any() and refused["vla_r1.failure_stage"][0] == "collision"
    assert refused["next.done"][:, 0].tolist() == [True] and not refused["next.success"].any()


def test_operator_judgement_counts(log, tmp_path):
    episodes.write_labels(log, "000004", {"success": True})
    build_intermediate(log, tmp_path / "intermediate", SETTINGS)
    judged = episode(tmp_path / "intermediate", 3)
    assert judged["vla_r1.judged"].all() and judged["next.success"][-1, 0]
    assert judged["vla_r1.outcome_source"][0] == "operator"


def test_depth_video_encoding_round_trips_within_a_grey_step():
    depth = np.array([[0, 200, 650], [1500, 4000, 100]], np.uint16)
    grey = lerobot_export.depth_to_grey(depth, 0.001, 0.2, 1.5)
    assert grey.shape == (2, 3, 3) and (grey[..., 0] == grey[..., 2]).all()
    assert grey[..., 0].tolist() == [[0, 1, 89], [255, 255, 1]]  # 0 = no depth; beyond the range clipped
    back = lerobot_export.grey_to_depth_m(grey[..., 0], 0.2, 1.5)
    assert np.isnan(back[0, 0]) and abs(back[0, 2] - 0.65) <= 1.3 / 254 / 2 + 1e-9


def test_real_arm_refusal_is_left_out_and_said(log, tmp_path):
    write_run_config(log, "moveit")  # the configured home is the simulator's, not the real arm's
    summary = build_intermediate(log, tmp_path / "intermediate", SETTINGS)
    assert summary.episodes == 3 and summary.refused_before_motion == 0
    assert summary.warnings == ["episode 000003 left out: it logged no commanded joint path"]


def test_a_log_that_never_commanded_the_arm_is_refused(tmp_path):
    root = tmp_path / "log"
    with EpisodeStore(root) as store:
        store.write(trial(), frame(), References(ReferenceSource.NONE))
    with pytest.raises(LeRobotExportError, match="commanded the arm"):
        build_intermediate(root, tmp_path / "intermediate", SETTINGS)
    with pytest.raises(LeRobotExportError, match="not an episode log"):
        build_intermediate(tmp_path / "nothing", tmp_path / "intermediate", SETTINGS)


def test_environment_is_keyed_by_the_pinned_requirements(tmp_path, monkeypatch):
    monkeypatch.delenv(lerobot_writer.ENV_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    directory = lerobot_writer.environment_dir()
    assert directory == tmp_path / "vla_r1_ros" / f"lerobot-0.4.4-{lerobot_writer.requirements_hash()}"
    directory.mkdir(parents=True)
    assert not lerobot_writer.is_ready(directory)  # pip never finished here: rebuilt, not reused
    (directory / lerobot_writer.READY_FILE).write_text("another-hash\n")
    assert not lerobot_writer.is_ready(directory)
    (directory / lerobot_writer.READY_FILE).write_text(lerobot_writer.requirements_hash() + "\n")
    assert lerobot_writer.is_ready(directory)
    monkeypatch.setenv(lerobot_writer.ENV_VARIABLE, str(tmp_path / "mine"))
    assert lerobot_writer.environment_dir() == tmp_path / "mine"


def test_cli_refuses_filters_and_an_existing_output(log, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export-dataset", str(log), str(out), "--format", "lerobot", "--only-success"]) == 1
    assert "apply to --format sharegpt only" in capsys.readouterr().err and not out.exists()
    out.mkdir()
    (out / "keep").write_text("x")
    assert main(["export-dataset", str(log), str(out), "--format", "lerobot"]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep"]
