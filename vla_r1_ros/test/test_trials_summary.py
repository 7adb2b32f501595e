"""Trial summaries count judged trials only and say by whom; per-scene tables; the sweep's curve and
report; the `--noise` / `--scenes` arguments of `vla-r1 trials`."""

from __future__ import annotations

import argparse
import json

import pytest
from PIL import Image

from vla_r1_ros.cli import sweep, trials
from vla_r1_ros.core.trials import TrialOutcome, format_summary, summarize, sweep_curve
from vla_r1_ros.report import write_sweep_report
from vla_r1_ros.trial_observers import SummaryWriter


def outcome(index: int, seed: int, success: bool, stage: str = "", source: str = "simulator") -> TrialOutcome:
    return TrialOutcome(index, seed, "put the red cube in the tray", "red_cube", success, stage, outcome_source=source)


def test_the_summary_writer_writes_the_run_folder_and_says_when_it_cannot(tmp_path, capsys):
    """The `SummaryWriter` observer at the end of a run: the table on stdout, summary.json (with what the
    run was, why it stopped, what never reached the log), trials.json; an unwritable folder is one line."""
    outcomes = [outcome(0, 5, True), outcome(1, 6, False, "grasp")]
    writer = SummaryWriter(tmp_path, 4, {"policy": "scripted", "seed": 5}, report=False)
    writer.on_run_end(outcomes, "the camera (sim) is restarting", ["t9"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["n"], summary["successes"], summary["policy"], summary["seed"]) == (2, 1, "scripted", 5)
    assert summary["stopped"] == "the camera (sim) is restarting" and summary["not_run"] == 2
    assert summary["unlogged"] == ["t9"] and summary["run_config"] == "run_config.json"
    assert [t["seed"] for t in json.loads((tmp_path / "trials.json").read_text())] == [5, 6]
    assert "success" in capsys.readouterr().out and not writer.error

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    writer = SummaryWriter(blocked / "run", 2, {}, report=False)
    writer.on_run_end(outcomes, "", [])
    assert writer.error.startswith(f"could not write the summary into {blocked / 'run'}")
    assert f"vla-r1: {writer.error}" in capsys.readouterr().err


def test_an_internal_error_is_never_judged_and_the_summary_names_it():
    """A bug of ours ends a trial as `internal` (core.trial_flow): it does not lower the policy's rate."""
    bug = outcome(1, 0, False, "internal", "simulator")  # even a source that could judge does not count it
    bug.episode_id, bug.message = "20261207T000000Z-abcd1234", "internal error in plan: KeyError('x')\nTraceback ..."
    summary = summarize([outcome(0, 0, True), bug])
    assert summary["n"] == 1 and summary["success_rate"] == 1.0 and "internal" not in summary["failures"]
    assert summary["not_judged"] == {"internal": 1}
    assert summary["internal_errors"] == [
        {"trial": 2, "episode_id": bug.episode_id, "message": "internal error in plan: KeyError('x')"}
    ]
    assert f"internal error    trial 2 ({bug.episode_id}): internal error in plan" in format_summary(summary)


def test_only_judged_trials_count_and_the_summary_says_by_whom():
    outcomes = [
        outcome(0, 0, True),
        outcome(1, 0, False, "wrong_object"),
        outcome(2, 1, False, "parse", "pipeline"),
        outcome(3, 1, False, "dry_run", "none"),  # a dry run is never a success, and not a failure either
        outcome(4, 2, False, "", "none"),  # executed on a real arm, nobody has judged it yet
        outcome(5, 2, True, "", "operator"),
    ]
    summary = summarize(outcomes)
    assert summary["trials"] == 6 and summary["n"] == 4 and summary["successes"] == 2
    assert summary["success_rate"] == 0.5
    assert summary["judged_by"] == {"operator": 1, "pipeline": 1, "simulator": 2}
    assert summary["not_judged"] == {"dry_run": 1, "awaiting judgement": 1}
    assert summary["failures"]["wrong_object"] == 1 and summary["failures"]["parse"] == 1
    assert "dry_run" not in summary["failures"]
    text = format_summary(summary)
    assert "2/4 judged" in text and "operator 1, pipeline 1, simulator 2" in text and "dry_run=1" in text
    assert "stopped" not in text and "not in the log" not in text
    # A run that stopped early and trials the logger never confirmed are said, never left out.
    text = format_summary(summary | {"stopped": "the camera (sim) is restarting", "not_run": 4, "unlogged": ["t7"]})
    assert "4 not run: the camera (sim) is restarting" in text and "not in the log    t7" in text


def test_per_scene_table():
    outcomes = [outcome(i, 10 + i // 3, i % 3 != 0) for i in range(6)]
    summary = summarize(outcomes)
    assert summary["per_scene"]["10"]["successes"] == 2 and summary["per_scene"]["10"]["n"] == 3
    assert summary["per_scene"]["11"]["success_rate"] == pytest.approx(2 / 3)
    low, high = summary["per_scene"]["11"]["wilson_95"]
    assert 0 < low < 2 / 3 < high < 1
    assert "per scene (seed)" in format_summary(summary)
    assert "per scene" not in format_summary(summarize([outcome(0, 0, True), outcome(1, 1, True)]))


def parse_trials(*argv: str, default_n: int = 10) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    trials.configure(parser, default_n=default_n)
    return parser.parse_args(list(argv))


def test_trials_arguments():
    assert trials.trial_count(parse_trials()) == 10
    assert trials.trial_count(parse_trials("--scenes", "4")) == 40  # the paper: 4 scenes × 10 trials
    assert trials.trial_count(parse_trials("--scenes", "2", "--per-scene", "3", "--n", "6")) == 6
    with pytest.raises(ValueError, match="contradicts"):
        trials.trial_count(parse_trials("--scenes", "2", "--n", "5"))
    with pytest.raises(ValueError, match="manual-reset"):
        trials.trial_count(parse_trials("--scenes", "2", "--manual-reset"))
    assert parse_trials("--noise", "paper").noise == "paper"
    assert parse_trials("--noise", "wrong_object=1").noise == "iou=1,rmse=0,wrong_object=1,parse_fail=0"
    with pytest.raises(SystemExit):
        parse_trials("--noise", "iou=2")


def test_sweep_levels_become_trials_runs(tmp_path):
    parser = argparse.ArgumentParser()
    sweep.configure(parser)
    args = parser.parse_args(["--vary", "rmse", "--base", "paper", "--trials", "4", "--seed", "7"])
    level = sweep.level_arguments(args, 150.0, tmp_path / "rmse=150")
    assert level.noise == "iou=0.3651,rmse=150,wrong_object=0,parse_fail=0"
    assert (trials.trial_count(level), level.seed, level.out) == (4, 7, str(tmp_path / "rmse=150"))


def test_sweep_curve_and_report(tmp_path):
    points = []
    for level, successes in ((1.0, 9), (0.6, 6), (0.3651, 3), (0.2, 1)):
        summary = summarize([outcome(i, i, i < successes, "" if i < successes else "grasp") for i in range(10)])
        points.append((level, summary | {"noise": f"iou={level:g}"}))
    curve = sweep_curve("iou", "none", points)
    assert curve["paper_level"] == pytest.approx(0.3651)
    assert [p["successes"] for p in curve["points"]] == [9, 6, 3, 1]
    assert curve["points"][2]["failures"] == {"grasp": 7}
    low, high = curve["points"][1]["wilson_95"]
    assert low < 0.6 < high
    (tmp_path / "sweep.json").write_text(json.dumps(curve))
    report = write_sweep_report(tmp_path)
    page = report.read_text()
    assert "data:image/png;base64," in page and "iou=0.6/report.html" in page and "3/10" in page
    with Image.open(tmp_path / "sweep.png") as png:
        assert png.size[0] > 300 and png.size[1] > 200
    assert sweep_curve("wrong_object", "paper", points)["paper_level"] is None  # the paper reports none


@pytest.mark.parametrize("blocked", ["parent is a file", "run_config.json is a folder"])
def test_an_unwritable_out_is_one_line_and_exit_code_2(tmp_path, capsys, blocked):
    """`vla-r1 trials --out` where nothing can be written stops before any process starts, in one line."""
    if blocked == "parent is a file":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "run"
    else:
        out = tmp_path / "run"
        (out / "run_config.json").mkdir(parents=True)
    assert trials.run_trials(parse_trials("--n", "1", "--out", str(out))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vla-r1: cannot write into --out {out}: ") and err.count("\n") == 1, err


def test_a_run_whose_log_has_holes_exits_1_and_names_them(capsys):
    assert trials.exit_status(3, 3, "", [], "") == 0 and capsys.readouterr().err == ""
    assert trials.exit_status(3, 3, "", ["t2", "t3"], "") == 1
    assert capsys.readouterr().err == "vla-r1: finished trials missing from the log: t2, t3\n"
    assert trials.exit_status(5, 2, "the camera (sim) is restarting", [], "") == 1
    assert "stopped after 2 of 5 trials: the camera (sim) is restarting" in capsys.readouterr().err
    assert trials.exit_status(3, 3, "", [], "could not write the summary") == 1
