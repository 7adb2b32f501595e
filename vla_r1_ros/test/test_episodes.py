"""The episode store: atomic writes under crashes, resume numbering, disk errors, references and rewards."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest

from vla_r1_ros.core import episodes, prompts, rewards
from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.episodes import (
    CameraFrame,
    EpisodeStore,
    EpisodeStoreError,
    References,
    ReferenceSource,
    TrialLog,
)
from vla_r1_ros.core.geometry import CameraIntrinsics, camera_extrinsics
from vla_r1_ros.core.metrics import resample_polyline
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.scene import ObjectState, Scene, reference_box, reference_waypoints

CAMERA = load_config("camera")
INTRINSICS = CameraIntrinsics.from_config(CAMERA)
BASE_T_CAMERA = camera_extrinsics(CAMERA)
CAMERA_INFO = {
    "frame_id": "camera_color_optical_frame",
    "width": INTRINSICS.width,
    "height": INTRINSICS.height,
    "k": INTRINSICS.k.reshape(-1).tolist(),
    "d": [0.0] * 5,
    "distortion_model": "plumb_bob",
}
BOX = (0.5, 0.6, 0.1, 0.08)
PATH = ((0.5, 0.6), (0.45, 0.5), (0.35, 0.45), (0.3, 0.4))
REASONING = {prompts.AFFORDANCE: "the red cube is in the middle", prompts.TRAJECTORY: "move it left to the tray"}


def trial(
    success: bool = True,
    box: tuple = BOX,
    path: tuple = PATH,
    executed: list | None = None,
    instruction: str = "put the red cube in the tray",
) -> TrialLog:
    return TrialLog(
        trial_id=f"trial-{time.monotonic_ns()}",
        instruction=instruction,
        stamp_ns=1_700_000_000_000_000_000,
        prediction=Prediction(
            instruction,
            prompts.TASKS,
            tuple(
                prompts.format_answer(REASONING[task], output)
                for task, output in zip(prompts.TASKS, (box, path), strict=True)
            ),
            (640, 480),
        ),
        plan={"feasible": True},
        executed_ee_path=executed or [],
        success=success,
        failure_stage="" if success else "grasp",
        timings={"predict": 1.5, "lift": 0.01, "plan": 0.02, "execute": 6.0},
    )


def frame() -> CameraFrame:
    rng = np.random.default_rng(0)
    color = rng.integers(0, 255, (INTRINSICS.height, INTRINSICS.width, 3), dtype=np.uint8)
    depth = rng.integers(0, 3000, (INTRINSICS.height, INTRINSICS.width), dtype=np.uint16)
    return CameraFrame(color, depth, CAMERA_INFO)


def scene() -> Scene:
    cube = ObjectState(
        "red_cube", "red", "cube", (0.45, 0.05, 0.025), (0, 0, 0, 1), (0.05, 0.05, 0.05), (300, 260, 340, 300)
    )
    other = ObjectState(
        "blue_cube", "blue", "cube", (0.5, -0.1, 0.025), (0, 0, 0, 1), (0.05, 0.05, 0.05), (380, 250, 420, 290)
    )
    tray = ObjectState("tray", "grey", "tray", (0.45, 0.3, 0.02), (0, 0, 0, 1), (0.3, 0.2, 0.04), (100, 200, 250, 320))
    return Scene(seed=3, objects=(cube, other), tray=tray, ee_position=(0.3, 0.0, 0.5))


def check_integrity(root) -> list[dict]:
    """The store's promise: every index line names a complete episode, every complete episode is indexed
    exactly once, in increasing order, and nothing half-written remains."""
    entries = episodes.read_index(root)
    names = [entry["episode"] for entry in entries]
    assert names == sorted(names) and len(set(names)) == len(names)
    on_disk = sorted(p.name for p in (root / episodes.EPISODES_DIR).iterdir())
    assert on_disk == names, "folders and index disagree"
    for name in names:
        document = episodes.load_episode(root, name)
        assert document["episode"] == name
    assert (root / episodes.INDEX_FILE).read_bytes().endswith(b"\n") or not entries
    return entries


# ---- writing and reading ----------------------------------------------------------------------------


def test_write_round_trip(tmp_path):
    log = tmp_path / "log"
    with EpisodeStore(log) as store:
        entry = store.write(trial(), frame(), References(ReferenceSource.SIMULATOR, BOX, PATH, target="red_cube"))
    assert entry["episode"] == "000001"
    assert entry["rewards"] == {"format": 1.0, "region": 1.0, "trajectory": 1.0, "total": 1.0, "success": True}
    assert episodes.read_index(log) == [entry]
    document = episodes.load_episode(log, "000001")
    assert document["schema_version"] == episodes.SCHEMA_VERSION
    assert document["camera"]["k"] == CAMERA_INFO["k"]
    assert document["prediction"]["raw_texts"][prompts.AFFORDANCE].startswith("<think>")
    assert list(document["timings"]) == ["predict", "lift", "plan", "execute"]
    assert document["references"]["target"] == "red_cube"
    np.testing.assert_array_equal(episodes.load_color(log, "000001"), frame().color)
    depth = episodes.load_depth(log, "000001")
    assert depth.dtype == np.uint16
    np.testing.assert_array_equal(depth, frame().depth)


def test_episodes_name_the_run_config_of_their_log(tmp_path):
    """`vla-r1 trials` writes run_config.json into the log before the first trial: every episode written
    while it is there names it with the hash of its bytes, so an episode says which configuration made it
    even after another run (attached to the same logger) replaced the file."""
    with EpisodeStore(tmp_path) as store:
        assert store.write(trial())["run_config"] is None  # a log without one: a lab's own launch
        (tmp_path / episodes.RUN_CONFIG_FILE).write_text('{"arguments": {"n": 2}}')
        first = store.write(replace(trial(), trial_id="t-second"))
        (tmp_path / episodes.RUN_CONFIG_FILE).write_text('{"arguments": {"n": 3}}')
        second = store.write(replace(trial(), trial_id="t-third"))
    assert first["run_config"]["file"] == "run_config.json"
    assert first["run_config"]["sha256"] == hashlib.sha256(b'{"arguments": {"n": 2}}').hexdigest()
    assert second["run_config"]["sha256"] == hashlib.sha256(b'{"arguments": {"n": 3}}').hexdigest()
    assert episodes.load_episode(tmp_path, first["episode"])["run_config"] == first["run_config"]


def test_missing_frame_is_still_an_episode(tmp_path):
    with EpisodeStore(tmp_path) as store:
        entry = store.write(trial(), notes=["no colour frame with stamp 1"])
    document = episodes.load_episode(tmp_path, entry["episode"])
    assert document["files"] == {"color": None, "depth": None}
    assert document["notes"] == ["no colour frame with stamp 1"]
    assert entry["rewards"]["total"] is None and entry["rewards"]["format"] == 1.0


def test_resume_continues_numbering(tmp_path):
    for expected in ("000001", "000002", "000003"):
        with EpisodeStore(tmp_path) as store:
            assert store.write(trial())["episode"] == expected
    with EpisodeStore(tmp_path) as store:
        assert store.next_episode == "000004"
    check_integrity(tmp_path)


def test_second_writer_is_refused(tmp_path):
    with EpisodeStore(tmp_path), pytest.raises(EpisodeStoreError, match="another process"):
        EpisodeStore(tmp_path)


def test_labels_sidecar(tmp_path):
    with EpisodeStore(tmp_path) as store:
        store.write(trial(), frame(), References(ReferenceSource.SIMULATOR, BOX, PATH))
    assert episodes.read_labels(tmp_path, "000001") is None
    episodes.write_labels(tmp_path, "000001", {"box": [0.2, 0.2, 0.1, 0.1], "labeller": "op"})
    assert episodes.read_labels(tmp_path, "000001") == {"box": [0.2, 0.2, 0.1, 0.1], "labeller": "op"}
    with pytest.raises(EpisodeStoreError, match="no episode"):
        episodes.write_labels(tmp_path, "000009", {"success": True})


# ---- crashes ------------------------------------------------------------------------------------------

# A writer process that SIGKILLs itself at one precise point of its second write: no cleanup, no
# `finally`, no flush — what a power cut or an OOM kill leaves.
CRASHING_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {test_dir!r})
    from test_episodes import trial, frame
    from vla_r1_ros.core import episodes
    from vla_r1_ros.core.episodes import durable, store as store_module

    root, point = sys.argv[1], sys.argv[2]
    store = episodes.EpisodeStore(root)
    store.write(trial(), frame())

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def replace_write_all(write_all):  # every module that writes bytes through it
        durable.write_all = store_module.write_all = write_all

    real_write_all = durable.write_all
    if point == "mid-file":  # half of the colour PNG is in the temp folder
        def write_half(fd, data):
            real_write_all(fd, data[: len(data) // 2])
            die()
        replace_write_all(write_half)
    elif point == "before-rename":
        os.rename = die
    elif point == "after-rename":  # the folder is complete, the index line never written
        episodes.EpisodeStore._append_index = die
    elif point == "torn-index-line":  # half an index line reaches the file
        def write_index_half(fd, data):
            if fd == store._index_fd:
                real_write_all(fd, data[: len(data) // 2])
                die()
            real_write_all(fd, data)
        replace_write_all(write_index_half)
    store.write(trial(), frame())
    """
)


def run_crashing_writer(root, point: str) -> None:
    script = CRASHING_WRITER.format(test_dir=os.path.dirname(__file__))
    result = subprocess.run([sys.executable, "-c", script, str(root), point], capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()


@pytest.mark.parametrize(
    ("point", "survives"),
    [("mid-file", False), ("before-rename", False), ("after-rename", True), ("torn-index-line", True)],
)
def test_crash_mid_write_keeps_the_index_whole(tmp_path, point, survives):
    run_crashing_writer(tmp_path, point)
    raw_index = (tmp_path / episodes.INDEX_FILE).read_bytes()
    assert raw_index.count(b"\n") == 1  # only the first episode's line is complete
    with EpisodeStore(tmp_path) as store:
        # A finished folder (renamed) is recovered; a half-written temp folder is gone.
        assert store.recovered == (["000002"] if survives else [])
        entries = check_integrity(tmp_path)
        assert [e["episode"] for e in entries] == (["000001", "000002"] if survives else ["000001"])
        assert store.write(trial())["episode"] == ("000003" if survives else "000002")
    check_integrity(tmp_path)


def test_killed_at_random_instants_never_corrupts(tmp_path):
    """A writer looping as fast as it can, SIGKILLed at arbitrary instants, five times in a row."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_episodes import trial
        from vla_r1_ros.core import episodes
        store = episodes.EpisodeStore(sys.argv[1])
        store.write(trial())
        print("ready", flush=True)
        while True:
            store.write(trial())
        """
    )
    rng = np.random.default_rng(7)
    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
        assert process.stdout.readline() == b"ready\n"
        time.sleep(float(rng.uniform(0.05, 0.3)))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        with EpisodeStore(tmp_path):
            entries = check_integrity(tmp_path)
    assert len(entries) >= 5  # at least the one each run finished before it was killed


# ---- disk errors --------------------------------------------------------------------------------------


def test_disk_full_while_writing_files_is_reported_and_leaves_nothing(tmp_path, monkeypatch):
    with EpisodeStore(tmp_path) as store:
        store.write(trial())

        def full(fd, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(EpisodeStoreError, match="disk full"):
            store.write(trial(), frame())
        monkeypatch.undo()
        assert not list((tmp_path / episodes.EPISODES_DIR).glob(".tmp-*"))
        check_integrity(tmp_path)
        assert store.write(trial())["episode"] == "000002"  # the failed write took no number
    check_integrity(tmp_path)


def test_disk_full_while_appending_the_index_loses_nothing(tmp_path, monkeypatch):
    real_write = os.write
    with EpisodeStore(tmp_path) as store:
        store.write(trial())

        def index_fills_up(fd, data):
            if fd == store._index_fd:  # half a line gets in, then the disk is full
                real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", index_fills_up)
        with pytest.raises(episodes.EpisodeIndexPending, match=r"episode 000002 is on disk.*disk full"):
            store.write(trial())
        # The torn half line was cut off: the index still holds only whole lines.
        assert [e["episode"] for e in episodes.read_index(tmp_path)] == ["000001"]
        assert (tmp_path / episodes.INDEX_FILE).read_bytes().endswith(b"}\n")
        monkeypatch.undo()
        assert store.write(trial())["episode"] == "000003"  # 000002 is indexed first
    assert [e["episode"] for e in check_integrity(tmp_path)] == ["000001", "000002", "000003"]


def test_log_dir_under_a_file_is_reported(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(EpisodeStoreError, match="not a directory"):
        EpisodeStore(blocker / "log")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_log_dir_is_reported(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(EpisodeStoreError, match="not writable"):
            EpisodeStore(tmp_path / "log")
    finally:
        tmp_path.chmod(0o700)


def test_damaged_middle_line_is_an_error_not_a_silent_loss(tmp_path):
    with EpisodeStore(tmp_path) as store:
        store.write(trial())
        store.write(trial())
    lines = (tmp_path / episodes.INDEX_FILE).read_bytes().split(b"\n")
    (tmp_path / episodes.INDEX_FILE).write_bytes(b"\n".join([b"{garbage", *lines[1:]]))
    with pytest.raises(EpisodeStoreError, match=r"index.jsonl:1 is damaged"):
        EpisodeStore(tmp_path)


# ---- references and rewards ---------------------------------------------------------------------------


def test_simulator_references_are_the_scene_ground_truth():
    references = episodes.select_references(trial(), scene=scene(), intrinsics=INTRINSICS, base_T_camera=BASE_T_CAMERA)
    target = scene().object("red_cube")
    assert references.source is ReferenceSource.SIMULATOR and references.target == "red_cube"
    np.testing.assert_allclose(references.box, reference_box(target, INTRINSICS))
    np.testing.assert_allclose(references.waypoints, reference_waypoints(scene(), target, INTRINSICS, BASE_T_CAMERA))


def test_simulator_references_need_a_resolvable_target():
    references = episodes.select_references(
        trial(instruction="put the green ball in the tray"),
        scene=scene(),
        intrinsics=INTRINSICS,
        base_T_camera=BASE_T_CAMERA,
    )
    assert references.source is ReferenceSource.NONE and "no unique object" in references.note


def test_a_real_trials_own_answer_is_never_its_reference_and_earns_no_task_reward():
    """Without a scene (a real robot) `auto` gives no reference: the box the trial acted on and the path
    it drove are its own prediction, so scoring against them would give a region reward of 1 for free."""
    executed = np.linspace([0.45, 0.05, 0.1], [0.45, 0.3, 0.2], 50).tolist()
    references = episodes.select_references(
        trial(executed=executed), intrinsics=INTRINSICS, base_T_camera=BASE_T_CAMERA
    )
    assert references.source is ReferenceSource.NONE and references.box is None and references.waypoints is None
    assert "label" in references.note
    rewards = episodes.episode_rewards(trial(executed=executed), references)
    assert rewards["region"] is None and rewards["trajectory"] is None and rewards["total"] is None
    assert rewards["format"] == 1.0  # what can be known without a reference
    with pytest.raises(ValueError, match="not made from a trial"):
        episodes.select_references(trial(), ReferenceSource.SUCCESSFUL_TRIAL)


def test_resample_polyline_spaces_3d_points_evenly():
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    np.testing.assert_allclose(resample_polyline(points, 5), [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 2, 0], [1, 3, 0]])


def test_episode_rewards_match_core_rewards():
    predicted_box, predicted_path = (0.52, 0.58, 0.12, 0.1), ((0.5, 0.6), (0.4, 0.5), (0.3, 0.4))
    references = References(ReferenceSource.SIMULATOR, BOX, PATH)
    scores = episodes.episode_rewards(trial(box=predicted_box, path=predicted_path), references)
    region = rewards.region_reward(predicted_box, BOX)
    trajectory = rewards.trajectory_reward(predicted_path, PATH)
    assert scores["format"] == 1.0
    assert scores["region"] == pytest.approx(region)
    assert scores["trajectory"] == pytest.approx(trajectory)
    totals = [0.9 * region + 0.1, 0.9 * trajectory + 0.1]
    assert scores["total"] == pytest.approx(np.mean(totals))
    assert scores["per_task"][prompts.AFFORDANCE]["total"] == pytest.approx(totals[0])


def test_episode_rewards_of_a_broken_answer():
    instruction = "put the red cube in the tray"
    answer = "the cube is somewhere <output>{x: 1}</output>"
    broken = TrialLog(
        "t", instruction, 0, Prediction(instruction, (prompts.AFFORDANCE,), (answer,), (640, 480)), {}, [], False
    )
    scores = episodes.episode_rewards(broken, References(ReferenceSource.SIMULATOR, BOX, PATH))
    assert scores == {
        "format": 0.0,
        "region": 0.0,
        "trajectory": None,
        "total": 0.0,
        "success": False,
        "per_task": {prompts.AFFORDANCE: {"format": 0.0, "task": 0.0, "total": 0.0}},
    }


def test_references_json_round_trip():
    references = References(ReferenceSource.SUCCESSFUL_TRIAL, BOX, PATH, note="n")
    assert References.from_json(json.loads(json.dumps(references.to_json()))) == references


def test_store_export_and_training_modules_import_light():
    """ROS-free core, and the heavy libraries (torch, TRL, datasets) only inside the functions that use them."""
    modules = ("core.episodes", "core.dataset", "training.grpo", "cli.export_dataset", "cli.train_grpo")
    heavy = ("rclpy", "torch", "trl", "datasets", "transformers")
    code = "".join(f"import vla_r1_ros.{name}\n" for name in modules)
    code += f"import sys\nprint(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_the_report_treats_logged_text_as_data(tmp_path):
    """An instruction with `$` (matplotlib mathtext) and odd Unicode renders as text, not a crash."""
    from vla_r1_ros.report import write_report

    instruction = "put the $^$ red cube in the $\\frac$ tray ✓ \u202e"
    with EpisodeStore(tmp_path) as store:
        store.write(replace(trial(), instruction=instruction, outcome_source="simulator"), frame())
    html = write_report(tmp_path, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "red cube in the" in html
