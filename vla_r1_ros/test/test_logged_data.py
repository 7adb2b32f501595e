"""What an episode log holds is data, however it got there (a hand-edited episode.json, a copied folder, a
tampered index): episode names that leave the log are refused by every reader with a clear error, a
missing or broken image is skipped with a warning, and `$` or odd Unicode in logged text never crashes
export, report or the label page's views."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_episodes import BOX, PATH, frame, trial

from vla_r1_ros.cli.main import main
from vla_r1_ros.core import dataset, episodes, labels
from vla_r1_ros.core.episodes import EpisodeStore, References, ReferenceSource

ODD_TEXT = "put the $^$ red cube in the $\\frac$ tray ✓ \u202e \u2028 \u0000 e\u0301 🙂"


@pytest.fixture
def log(tmp_path):
    """Two simulator episodes with ground truth, 000001 and 000002."""
    root = tmp_path / "log"
    references = References(ReferenceSource.SIMULATOR, BOX, PATH, target="red_cube")
    with EpisodeStore(root) as store:
        store.write(trial(), frame(), references)
        store.write(trial(), frame(), references)
    return root


def _rename_in_index(root, episode: str, name: str) -> None:
    lines = (root / episodes.INDEX_FILE).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        if entry["episode"] == episode:
            entry["episode"] = name
    (root / episodes.INDEX_FILE).write_text("".join(json.dumps(e) + "\n" for e in entries))


def _edit_episode(root, episode: str, edit) -> None:
    path = episodes.episode_dir(root, episode) / episodes.EPISODE_FILE
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))  # ensure_ascii: a lone surrogate survives as its \ud800 escape


@pytest.fixture
def outside(tmp_path):
    """An episode-looking folder outside the log, and the secret next to it a `../` name would reach."""
    folder = tmp_path / "outside" / "episodes" / "000001"
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize(
    "name", ["../x", "000001/../../x", "/etc", "..", "", "0001", "000001\n", "000001 ", "٠٠٠٠٠١", 1, None]
)
def test_every_reader_refuses_a_name_that_is_not_an_episode_of_the_log(log, name):
    for read in (episodes.load_episode, episodes.load_color, episodes.load_depth, episodes.read_labels):
        with pytest.raises(episodes.EpisodeNameError, match="not an episode name"):
            read(log, name)
    with pytest.raises(episodes.EpisodeNameError):
        episodes.write_labels(log, name, {"success": True})
    with pytest.raises(labels.LabelError, match="not an episode name"):  # the label page's answer: 404
        labels.episode_view(log, name)


def test_an_episode_folder_that_links_out_of_the_log_is_refused_by_every_reader(log, tmp_path, outside):
    source = episodes.episode_dir(log, "000001")
    for name in (episodes.EPISODE_FILE, episodes.COLOR_FILE, episodes.DEPTH_FILE):
        (outside / name).write_bytes((source / name).read_bytes())
    (log / episodes.EPISODES_DIR / "000003").symlink_to(outside)
    for read in (episodes.load_episode, episodes.load_color, episodes.read_labels):
        with pytest.raises(episodes.EpisodeNameError, match="outside the log"):
            read(log, "000003")
    with pytest.raises(episodes.EpisodeNameError):
        episodes.write_labels(log, "000003", {"success": True})
    assert not (outside / episodes.LABELS_FILE).exists()


def test_an_index_naming_an_episode_outside_the_log_is_refused_by_export_report_and_label_page(
    log, tmp_path, outside, capsys
):
    source = episodes.episode_dir(log, "000001")
    for name in (episodes.EPISODE_FILE, episodes.COLOR_FILE):
        (outside / name).write_bytes((source / name).read_bytes())
    _rename_in_index(log, "000001", "../../outside/episodes/000001")

    assert main(["export-dataset", str(log), str(tmp_path / "out")]) == 1
    assert "'../../outside/episodes/000001' is not an episode name of the log" in capsys.readouterr().err
    assert not (tmp_path / "out" / dataset.IMAGES_DIR).exists()
    assert main(["report", str(log)]) == 1
    assert "is not an episode name of the log" in capsys.readouterr().err
    with pytest.raises(episodes.EpisodeNameError):
        labels.episode_summaries(log)
    assert main(["eval", str(log)]) != 0


def test_export_skips_a_missing_or_broken_image_with_a_warning_and_exports_the_rest(log, tmp_path, capsys):
    (episodes.episode_dir(log, "000001") / episodes.COLOR_FILE).unlink()
    out = tmp_path / "out"
    assert main(["export-dataset", str(log), str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: episode 000001 skipped: cannot read" in captured.err and "No such file" in captured.err
    summary = json.loads(captured.out)
    assert summary["records"] == 2 and summary["skipped"] == {"colour image missing or unreadable": 1}
    assert sorted(p.name for p in (out / dataset.IMAGES_DIR).iterdir()) == ["000002.png"]
    assert dataset.load_hf_dataset(out)["episode"] == ["000002", "000002"]

    (episodes.episode_dir(log, "000002") / episodes.COLOR_FILE).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(dataset.ExportError, match="no episode"):
        dataset.export_dataset(log, tmp_path / "out2")


def test_export_reads_the_layouts_image_not_a_file_episode_json_names(log, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for the dataset")
    _edit_episode(log, "000001", lambda d: d["files"].update(color="../../../secret.png"))
    dataset.export_dataset(log, tmp_path / "out", tasks=["affordance"])
    exported = (tmp_path / "out" / dataset.IMAGES_DIR / "000001.png").read_bytes()
    assert exported == (episodes.episode_dir(log, "000001") / episodes.COLOR_FILE).read_bytes()


def test_odd_text_is_exported_verbatim_and_text_no_record_can_hold_is_skipped_with_a_warning(tmp_path):
    root = tmp_path / "log"
    references = References(ReferenceSource.SIMULATOR, BOX, PATH, target="red_cube")
    with EpisodeStore(root) as store:
        store.write(replace(trial(), instruction=ODD_TEXT), frame(), references)
        store.write(replace(trial(), instruction="put the <image> in the tray"), frame(), references)
        store.write(trial(), frame(), references)
    _edit_episode(root, "000003", lambda d: d.update(instruction="put the red \ud800 cube in the tray"))

    summary = dataset.export_dataset(root, tmp_path / "out")
    assert summary.skipped == {"text that cannot go into a record": 2}
    assert summary.warnings == [
        "episode 000002 skipped: the instruction contains the image token <image>",
        "episode 000003 skipped: the instruction is not valid Unicode text (surrogates not allowed at character 12)",
    ]
    records = json.loads((tmp_path / "out" / dataset.SHAREGPT_FILE).read_text(encoding="utf-8"))
    assert [r["conversations"][0]["value"].startswith(ODD_TEXT) for r in records] == [True, True]
    assert all(r["conversations"][0]["value"].count("<image>") == 1 for r in records)
    assert dataset.load_hf_dataset(tmp_path / "out")["prompt"][0][0]["content"][0]["text"].startswith(ODD_TEXT)


def test_report_and_label_page_show_odd_and_broken_text(log, tmp_path):
    _edit_episode(log, "000001", lambda d: d.update(instruction=ODD_TEXT))
    _edit_episode(log, "000002", lambda d: d.update(instruction="put the red \ud800 cube in the tray"))
    assert main(["report", str(log)]) == 0
    html = (log / "report.html").read_text(encoding="utf-8")
    assert "put the $^$ red cube" in html and "put the red \\ud800 cube" in html
    assert labels.episode_summaries(log)[0]["instruction"] == ODD_TEXT
    view = json.dumps(labels.episode_view(log, "000002"))  # what the page's GET answers
    assert "\\ud800" in view
