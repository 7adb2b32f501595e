"""Operator labels (`core.labels`): validation, merge-saving, safe episode names, and what labels change —
the outcome, the references, the re-scored rewards, `vla-r1 eval LOGDIR` and the export."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from test_episodes import BOX, PATH, frame, trial

from vla_r1_ros.cli.main import main
from vla_r1_ros.core import dataset, episodes, labels, prompts, rewards
from vla_r1_ros.core.episodes import EpisodeStore, References, ReferenceSource
from vla_r1_ros.core.outcomes import EpisodeOutcome, episode_outcome
from vla_r1_ros.core.parsing import parse_answer

LABELLED_BOX = [0.3, 0.3, 0.1, 0.1]
LABELLED_PATH = [[0.3, 0.3], [0.4, 0.35], [0.5, 0.4]]


@pytest.fixture
def log(tmp_path):
    """000001 simulator ground truth, 000002 a real-robot success (references = its own prediction),
    000003 a real-robot failure (no references)."""
    root = tmp_path / "log"
    with EpisodeStore(root) as store:
        store.write(trial(), frame(), References(ReferenceSource.SIMULATOR, BOX, PATH, target="red_cube"))
        store.write(trial(), frame(), References(ReferenceSource.SUCCESSFUL_TRIAL, BOX, PATH))  # an older logger's
        store.write(trial(success=False), frame(), References(ReferenceSource.NONE, note="trial failed"))
    return root


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"box": [0.5, 0.5, 0.1]}, r"box must be \[cx, cy, w, h\]"),
        ({"box": [0.5, float("nan"), 0.1, 0.1]}, "finite"),
        ({"box": [0.5, float("inf"), 0.1, 0.1]}, "finite"),
        ({"box": [0.5, 1.5, 0.1, 0.1]}, r"within \[0, 1\]"),
        ({"box": [0.5, 0.5, 0.0, 0.1]}, "> 0"),
        ({"box": [True, 0.5, 0.1, 0.1]}, "finite number"),
        ({"waypoints": [[0.1, 0.1]]}, "at least 2"),
        ({"waypoints": [[0.1, 0.1], [0.2]]}, "waypoint 1 is not an"),
        ({"waypoints": "0.1,0.2"}, "at least 2"),
        ({"success": 1}, "true or false"),
        ({"success": False}, "failure_stage must be one of"),
        ({"success": False, "failure_stage": "bored"}, "failure_stage must be one of"),
        ({"success": True, "failure_stage": "grasp"}, "no failure stage"),
        ({"failure_stage": "grasp"}, "needs success"),
        ({"note": 5}, "note must be a string"),
        ({"note": "x" * (labels.NOTE_MAX_CHARS + 1)}, "longer than"),
        ({"note": "half a pair \ud800"}, "not valid Unicode"),
    ],
)
def test_bad_labels_are_refused_and_nothing_is_written(log, bad, message):
    with pytest.raises(labels.LabelError, match=message):
        labels.save_labels(log, "000001", bad)
    assert episodes.read_labels(log, "000001") is None


@pytest.mark.parametrize("name", ["../x", "000001/../../x", "/etc", "..", "", "0001", "000001 ", 1, None, "000009"])
def test_episode_names_that_are_not_episodes_of_the_log_are_refused(log, name):
    with pytest.raises(labels.LabelError):
        labels.save_labels(log, name, {"success": True})


def test_an_episode_folder_linking_out_of_the_log_is_refused(log, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / episodes.EPISODE_FILE).write_text("{}")
    (log / episodes.EPISODES_DIR / "000100").symlink_to(outside)
    with pytest.raises(labels.LabelError, match="outside"):
        labels.save_labels(log, "000100", {"success": True})
    assert not (outside / episodes.LABELS_FILE).exists()


def test_saving_merges_stamps_and_removes_with_null(log):
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    labels.save_labels(log, "000002", {"success": False, "failure_stage": "grasp", "note": "slipped $1 🙂"}, "op", now)
    labels.save_labels(log, "000002", {"box": LABELLED_BOX}, "reviewer", now)
    stored = episodes.read_labels(log, "000002")
    assert stored == {
        "success": False,
        "failure_stage": "grasp",
        "note": "slipped $1 🙂",
        "outcome_source": "operator",
        "box": LABELLED_BOX,
        "labeller": "reviewer",
        "labelled_at": "2026-12-01T12:00:00+00:00",
    }
    # A new judgement replaces the old one whole (no stale failure stage); null removes a key.
    labels.save_labels(log, "000002", {"success": True, "note": None}, "op", now)
    stored = episodes.read_labels(log, "000002")
    assert stored["success"] is True and stored["failure_stage"] == "" and "note" not in stored
    labels.save_labels(log, "000002", {"success": None}, "op", now)
    stored = episodes.read_labels(log, "000002")
    assert "success" not in stored and "outcome_source" not in stored and stored["box"] == LABELLED_BOX
    document = json.loads((episodes.episode_dir(log, "000002") / episodes.LABELS_FILE).read_text())
    assert document["schema_version"] == episodes.LABELS_SCHEMA_VERSION


def test_references_ground_truth_or_operator_never_the_trials_own_answer(log):
    simulator = episodes.load_episode(log, "000001")
    real = episodes.load_episode(log, "000002")
    assert labels.effective_references(simulator, {}).source is ReferenceSource.SIMULATOR
    unlabelled = labels.effective_references(real, {})
    assert unlabelled.source is ReferenceSource.NONE and unlabelled.box is None and unlabelled.waypoints is None
    assert "own prediction" in unlabelled.note
    # An operator box over simulator ground truth keeps the simulator path; over a real-robot trial it
    # does not borrow the trial's own path.
    over_simulator = labels.effective_references(simulator, {"box": LABELLED_BOX})
    assert over_simulator.source is ReferenceSource.OPERATOR and over_simulator.waypoints == PATH
    assert over_simulator.note == "affordance: operator; trajectory: simulator"
    over_real = labels.effective_references(real, {"box": LABELLED_BOX})
    assert over_real.box == tuple(LABELLED_BOX) and over_real.waypoints is None


def test_labels_change_outcome_and_rewards(log):
    real = episodes.load_episode(log, "000002")
    assert labels.labelled_rewards(real, {})["total"] is None  # no reference: no reward is made up
    judged = {"success": False, "failure_stage": "place", "box": LABELLED_BOX, "waypoints": LABELLED_PATH}
    assert episode_outcome(real, judged) == EpisodeOutcome(False, "place", "", "operator")
    scored = labels.labelled_rewards(real, judged)
    affordance_text = real["prediction"]["raw_texts"][prompts.AFFORDANCE]
    trajectory_text = real["prediction"]["raw_texts"][prompts.TRAJECTORY]
    assert (
        scored["region"]
        == rewards.score_completion(
            prompts.AFFORDANCE, affordance_text, prompts.format_answer("", LABELLED_BOX)
        ).task_score
    )
    assert (
        scored["trajectory"]
        == rewards.score_completion(
            prompts.TRAJECTORY, trajectory_text, prompts.format_answer("", LABELLED_PATH)
        ).task_score
    )
    assert scored["success"] is False and 0.0 < scored["total"] < 0.9
    moved = labels.labelled_rewards(real, judged | {"box": list(BOX)})
    assert moved["region"] == pytest.approx(1.0) and moved["total"] > scored["total"]


def test_export_uses_operator_references_and_follows_edits(log, tmp_path):
    summary = dataset.export_dataset(log, tmp_path / "a")
    assert summary.by_reference_source == {"simulator": 2}
    assert summary.skipped["successful_trial references (not simulator or operator)"] == 1
    assert summary.skipped["none references (not simulator or operator)"] == 1  # the failed real-robot trial
    labels.save_labels(log, "000002", {"box": LABELLED_BOX, "waypoints": LABELLED_PATH})
    labels.save_labels(log, "000003", {"success": True, "box": LABELLED_BOX})
    # 000002 logged success, but nobody judged it (a real-robot trial): it is not a success to learn from.
    unjudged = dataset.export_dataset(log, tmp_path / "b", only_success=True)
    assert unjudged.skipped["not judged a success"] == 1 and unjudged.episodes == 2
    labels.save_labels(log, "000002", {"success": True})
    summary = dataset.export_dataset(log, tmp_path / "b", only_success=True, overwrite=True)
    assert summary.by_reference_source == {"simulator": 2, "operator": 3} and summary.episodes == 3
    records = json.loads((tmp_path / "b" / dataset.SHAREGPT_FILE).read_text())
    truths = [record["conversations"][1]["value"] for record in records if record["image"] == "images/000002.png"]
    assert parse_answer(truths[0], prompts.AFFORDANCE).box == pytest.approx(LABELLED_BOX)
    assert parse_answer(truths[1], prompts.TRAJECTORY).waypoints == tuple(tuple(p) for p in LABELLED_PATH)
    labels.save_labels(log, "000002", {"box": [0.7, 0.7, 0.2, 0.2]})
    data = dataset.load_hf_dataset(dataset.export_dataset(log, tmp_path / "c").out)
    edited = [row["ground_truth"] for row in data if row["episode"] == "000002" and row["task"] == prompts.AFFORDANCE]
    assert len(edited) == 1 and parse_answer(edited[0], prompts.AFFORDANCE).box == pytest.approx((0.7, 0.7, 0.2, 0.2))


def test_eval_of_a_log_uses_the_effective_references(log, capsys):
    assert main(["eval", str(log)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reference_sources"] == {"simulator": 2} and summary["without_reference"] == 4
    assert summary["affordance"] == {"n": 1, "iou": pytest.approx(100.0)}
    labels.save_labels(log, "000002", {"box": [BOX[0] + BOX[2] / 2, BOX[1], BOX[2], BOX[3]]})  # half overlap
    assert main(["eval", str(log)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reference_sources"] == {"simulator": 2, "operator": 1} and summary["without_reference"] == 3
    assert summary["affordance"]["n"] == 2 and summary["affordance"]["iou"] == pytest.approx((100.0 + 100 / 3) / 2)


def test_eval_refuses_a_directory_that_is_not_a_log(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not an episode log" in capsys.readouterr().err


def test_judgements_file(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"success": true, "note": "ok"}\n\n{"success": false, "failure_stage": "ik"}\n')
    assert labels.load_judgements(path, 2) == [
        {"success": True, "failure_stage": "", "note": "ok"},
        {"success": False, "failure_stage": "ik", "note": ""},
    ]
    path.write_text('{"success": true}\n{"success": false, "failure_stage": "grasp", "note": NaN}\n')
    with pytest.raises(labels.LabelError, match=r"j.jsonl:2: note must be a string"):
        labels.load_judgements(path, 2)
    with pytest.raises(labels.LabelError, match="cannot read"):
        labels.load_judgements(tmp_path / "missing.jsonl", 1)


def test_ask_judgement_repeats_until_the_answers_are_valid():
    answers = iter(["", "perhaps", "N", "?", "grasp", "  fell off 🙂  "])
    asked = []

    def ask(prompt):
        asked.append(prompt)
        return next(answers)

    assert labels.ask_judgement(ask, "success") == {"success": False, "failure_stage": "grasp", "note": "fell off 🙂"}
    assert sum("Did the trial succeed?" in prompt for prompt in asked) == 3
    assert "robot reports: success" in asked[0] and "robot reports" not in asked[1]
    assert asked[4].startswith("not a stage")


def test_concurrent_saves_lose_no_update(log):
    """The page's server threads and a judging `vla-r1 trials` may save the same episode at once."""
    import threading

    barrier = threading.Barrier(8)

    def save(index: int) -> None:
        barrier.wait()
        for round_ in range(5):
            labels.save_labels(log, "000001", {f"key_{index}": round_})

    threads = [threading.Thread(target=save, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = episodes.read_labels(log, "000001")
    assert {f"key_{index}": 4 for index in range(8)}.items() <= stored.items()


def test_record_judgement_stores_it_and_rescores_the_outcome(log):
    from vla_r1_ros.core.trials import TrialOutcome

    trial_id = episodes.read_index(log)[1]["trial_id"]  # the real-robot success
    logged = TrialOutcome(1, 0, "put the red cube in the tray", "", True, episode_id=trial_id, rewards={"total": 1.0})
    judged, episode = labels.record_judgement(log, logged, {"success": False, "failure_stage": "grasp", "note": ""})
    assert episode == "000002" and episodes.read_labels(log, episode)["failure_stage"] == "grasp"
    assert judged.success is False and judged.failure_stage == "grasp"
    # The logger's 1.0 was the trial's answer scored against itself; with no label there is no task reward.
    assert judged.rewards == {"format": 1.0}
    timed_out = TrialOutcome(2, 0, "put the red cube in the tray", "", False, "timeout")
    judged, episode = labels.record_judgement(log, timed_out, {"success": False, "failure_stage": "timeout"})
    assert episode is None and judged.failure_stage == "timeout"
    with pytest.raises(labels.LabelError):
        labels.record_judgement(log, timed_out, {"success": False, "failure_stage": "bored"})


def test_the_label_page_compares_the_operator_with_the_camera(tmp_path):
    """A camera-judged log: the page's list and view say what the camera said and whether the operator
    disagrees (how a lab measures the judge on its own cell); the camera's handed-over trial is no verdict."""
    from dataclasses import replace

    from vla_r1_ros.core.episodes import CameraJudgement, SimulatorVerdict

    root = tmp_path / "log"

    def judged(success: bool, asks: bool = False) -> CameraJudgement:
        verdict = {
            "judged": not asks,
            "success": success,
            "failure_stage": "" if success else "place",
            "confidence": 0.95,
            "message": "red_cube placed in the tray",
            "asks_operator": asks,
        }
        return CameraJudgement(frame(), {}, verdict)

    with EpisodeStore(root) as store:
        for success, asks in ((True, False), (False, False), (False, True)):
            record = replace(trial(success=success), outcome_source="vision" if not asks else "none")
            record = replace(record, camera_judgement=judged(success, asks), simulator_verdict=SimulatorVerdict(True))
            store.write(record, frame(), References(ReferenceSource.NONE, note="camera-judged"))
    labels.save_labels(root, "000001", {"success": False, "failure_stage": "place"})  # the operator disagrees
    labels.save_labels(root, "000002", {"success": False, "failure_stage": "place"})  # ... and agrees
    summaries = {s["episode"]: s for s in labels.episode_summaries(root)}
    assert [summaries[e]["camera"] for e in ("000001", "000002", "000003")] == [True, False, None]
    assert [summaries[e]["camera_disagrees"] for e in ("000001", "000002", "000003")] == [True, False, False]
    view = labels.episode_view(root, "000001")
    assert view["camera"]["said"] is True and view["camera"]["confidence"] == 0.95 and view["camera_disagrees"]
    assert labels.episode_view(root, "000003")["camera"]["said"] is None
