"""`vla-r1 export-dataset`: ShareGPT records with the verbatim suffixes, and a `datasets` dataset for TRL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_episodes import BOX, PATH, frame, trial

from vla_r1_ros.cli.main import main
from vla_r1_ros.core import dataset, episodes, prompts, rewards
from vla_r1_ros.core.episodes import EpisodeStore, References, ReferenceSource
from vla_r1_ros.core.parsing import parse_answer

# The official suffixes, typed out here rather than imported: the test is that they come out verbatim.
AFFORDANCE_SUFFIX = (
    ' Please output the 2D affordance region define by bounding box of the object in the format <output>{"x": value,'
    ' "y": value, "width": value, "height": value}</output>.\n<image>'
)
TRAJECTORY_SUFFIX = (
    " Please output the optimal trajectory of the end-effector to the target object in the format"
    " <output>[[x1, y1], [x2, y2], ...]</output>.\n<image>"
)
FAR_BOX = (0.1, 0.1, 0.05, 0.05)


@pytest.fixture
def log(tmp_path):
    """Three episodes: a good success, a failure, and a success whose box answer is far off."""
    root = tmp_path / "log"
    references = References(ReferenceSource.SIMULATOR, BOX, PATH, target="red_cube")
    with EpisodeStore(root) as store:
        store.write(trial(), frame(), references)
        store.write(trial(success=False, instruction="put the blue cube in the tray"), frame(), references)
        store.write(trial(box=FAR_BOX), frame(), references)
        store.write(trial(), None, references, notes=["no colour frame"])  # no image: cannot be exported
    return root


def test_sharegpt_records_are_the_official_format(log, tmp_path):
    out = tmp_path / "out"
    summary = dataset.export_dataset(log, out)
    assert summary.records == 6 and summary.episodes == 3
    assert summary.skipped == {"no colour image": 1}
    records = json.loads((out / dataset.SHAREGPT_FILE).read_text())
    assert len(records) == 6
    for record in records:
        assert set(record) == {"image", "conversations"}
        human, gpt = record["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert (out / record["image"]).is_file()
    first_affordance, first_trajectory = records[0]["conversations"], records[1]["conversations"]
    assert first_affordance[0]["value"] == "put the red cube in the tray" + AFFORDANCE_SUFFIX
    assert first_trajectory[0]["value"] == "put the red cube in the tray" + TRAJECTORY_SUFFIX
    # The gpt turn is the REFERENCE (ground truth), in the model's format, with the trial's reasoning.
    answer = parse_answer(first_affordance[1]["value"], prompts.AFFORDANCE)
    assert answer.ok and answer.box == pytest.approx(BOX) and answer.reasoning == "the red cube is in the middle"
    far = parse_answer(records[4]["conversations"][1]["value"], prompts.AFFORDANCE)
    assert far.box == pytest.approx(BOX)  # not the model's FAR_BOX
    written = (out / records[0]["image"]).read_bytes()
    assert written == (episodes.episode_dir(log, "000001") / episodes.COLOR_FILE).read_bytes()


def test_hf_dataset_loads_with_the_trl_columns(log, tmp_path):
    from trl.data_utils import prepare_multimodal_messages

    out = tmp_path / "out"
    dataset.export_dataset(log, out)
    data = dataset.load_hf_dataset(out)
    assert set(data.column_names) == {"prompt", "image", "task", "ground_truth", "episode"}
    assert len(data) == 6
    row = data[0]
    assert row["task"] == prompts.AFFORDANCE and row["episode"] == "000001"
    # The official RL stage's layout: text split at <image>, the image there, no leading space.
    assert row["prompt"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "put the red cube in the tray" + AFFORDANCE_SUFFIX.removesuffix("<image>")},
                {"type": "image", "text": None},
            ],
        }
    ]
    assert row["image"].size == (640, 480)
    np.testing.assert_array_equal(np.asarray(row["image"].convert("RGB")), frame().color)
    # TRL fills the image placeholder from the `image` column, where the prompt's <image> was.
    filled = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
    assert [part["type"] for part in filled[0]["content"]] == ["text", "image"]
    assert filled[0]["content"][1]["image"] is row["image"]
    # The ground truth is a valid reference for the rewards: it scores itself 1.
    for example in data:
        truth = example["ground_truth"]
        assert rewards.score_completion(example["task"], truth, truth).score == pytest.approx(1.0)
    # hf/ is self-contained: it still loads after the images folder is gone.
    for image in (out / dataset.IMAGES_DIR).iterdir():
        image.unlink()
    assert dataset.load_hf_dataset(out / dataset.HF_DIR)[0]["image"].size == (640, 480)


def test_filters(log, tmp_path):
    only_success = dataset.export_dataset(log, tmp_path / "a", only_success=True)
    assert only_success.records == 4 and only_success.skipped["failed trial"] == 1
    good = dataset.export_dataset(log, tmp_path / "b", min_reward=0.9)
    assert good.records == 5 and good.skipped[f"affordance: reward below {0.9}"] == 1
    affordance = dataset.export_dataset(log, tmp_path / "c", tasks=[prompts.AFFORDANCE])
    assert affordance.by_task == {prompts.AFFORDANCE: 3}
    with pytest.raises(dataset.ExportError, match="no episode"):
        dataset.export_dataset(log, tmp_path / "d", min_reward=1.5)


def test_operator_labels_override_outcome_and_references(log, tmp_path):
    episodes.write_labels(log, "000002", {"success": True, "box": [0.3, 0.3, 0.1, 0.1]})
    summary = dataset.export_dataset(log, tmp_path / "out", only_success=True)
    assert summary.records == 6 and summary.by_reference_source["operator"] == 2
    records = json.loads((tmp_path / "out" / dataset.SHAREGPT_FILE).read_text())
    labelled = parse_answer(records[2]["conversations"][1]["value"], prompts.AFFORDANCE)
    assert labelled.box == pytest.approx((0.3, 0.3, 0.1, 0.1))


def test_references_from_the_trial_itself_are_never_exported(tmp_path):
    """A real-robot trial's references are its own prediction (the box it acted on, the path it ran):
    training on them would teach the model its own answers."""
    root = tmp_path / "log"
    own = References(ReferenceSource.SUCCESSFUL_TRIAL, BOX, PATH)
    with EpisodeStore(root) as store:
        store.write(trial(), frame(), own)
        store.write(trial(), frame(), References(ReferenceSource.SIMULATOR, BOX, PATH, target="red_cube"))
    summary = dataset.export_dataset(root, tmp_path / "out")
    assert summary.episodes == 1 and dict(summary.by_reference_source) == {"simulator": 2}
    assert summary.skipped == {"successful_trial references (not simulator or operator)": 1}
    episodes.write_labels(root, "000001", {"success": True, "box": [0.3, 0.3, 0.1, 0.1]})  # an operator's box
    relabelled = dataset.export_dataset(root, tmp_path / "out2")
    assert relabelled.by_reference_source["operator"] >= 1


def test_cli(log, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export-dataset", str(log), str(out), "--only-success", "--tasks", "trajectory"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 2
    assert json.loads((out / dataset.SUMMARY_FILE).read_text())["filters"]["only_success"] is True
    assert main(["export-dataset", str(log), str(out)]) == 1  # OUT exists
    assert "not empty" in capsys.readouterr().err
    assert main(["export-dataset", str(log), str(out), "--overwrite"]) == 0
    assert main(["export-dataset", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 1
