"""`vla-r1 report` compares runs by checkpoint: the episodes of one log or of several, grouped by the
(checkpoint, adapter) their prediction's model id names, each group with its trials, judged successes,
Wilson interval and mean rewards. Logs are written with the episode store (`test_episodes`' trials)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_episodes import BOX, PATH, frame, trial

from vla_r1_ros.cli.main import main
from vla_r1_ros.core import prompts
from vla_r1_ros.core.episodes import EpisodeStore, References, ReferenceSource
from vla_r1_ros.core.labels import outcomes_by_checkpoint, save_labels
from vla_r1_ros.core.prediction import checkpoint_and_adapter, model_id_with_adapter
from vla_r1_ros.core.rewards import score_completion
from vla_r1_ros.core.trials import compare_checkpoints, wilson_interval

BASE = "vla_r1:/models/tiny"
SFT = model_id_with_adapter(BASE, "/runs/sft/adapter")
GRPO = model_id_with_adapter(BASE, "/runs/grpo/adapter")
REFERENCES = References(ReferenceSource.SIMULATOR, BOX, PATH, target="red_cube")
OFF_BOX = (0.6, 0.6, 0.1, 0.08)  # beside the reference box: a lower region reward


def write_trials(log, model: str, successes: list[bool], box=BOX, dry_runs: int = 0) -> list[str]:
    """Judged trials of `model` (simulator verdicts), then `dry_runs` not judged; their episode names."""
    names = []
    with EpisodeStore(log) as store:
        for success in successes:
            logged = trial(success=success, box=box)
            logged = replace(logged, prediction=replace(logged.prediction, model_id=model), outcome_source="simulator")
            names.append(store.write(logged, frame(), REFERENCES)["episode"])
        for _ in range(dry_runs):
            logged = trial(success=False, box=box)
            dry = replace(logged, prediction=replace(logged.prediction, model_id=model), failure_stage="dry_run")
            names.append(store.write(dry, frame(), REFERENCES)["episode"])
    return names


def region(box) -> float:
    return score_completion(
        prompts.AFFORDANCE, prompts.format_answer("r", box), prompts.format_answer("", BOX)
    ).task_score


def test_a_model_id_names_checkpoint_and_adapter_both_ways():
    assert checkpoint_and_adapter(SFT) == (BASE, "/runs/sft/adapter")
    assert checkpoint_and_adapter(BASE) == (BASE, "")
    assert checkpoint_and_adapter("scripted:simulator-expert(noise=paper, path=carry)")[1] == ""
    assert checkpoint_and_adapter("") == ("", "")


def test_one_log_with_several_checkpoints_is_grouped_by_checkpoint_and_adapter(tmp_path):
    write_trials(tmp_path, BASE, [False, False, True], box=OFF_BOX, dry_runs=2)
    write_trials(tmp_path, SFT, [True, True, True, False])
    rows = compare_checkpoints(outcomes_by_checkpoint([tmp_path]))
    assert [(row["checkpoint"], row["adapter"]) for row in rows] == [(BASE, ""), (BASE, "/runs/sft/adapter")]
    base, sft = rows
    # Dry runs are trials of the checkpoint, never judged: the rate is over the 3 judged ones.
    assert (base["trials"], base["n"], base["successes"]) == (5, 3, 1)
    assert base["wilson_95"] == list(wilson_interval(1, 3)) and base["success_rate"] == pytest.approx(1 / 3)
    assert (sft["trials"], sft["n"], sft["successes"]) == (4, 4, 3)
    assert sft["wilson_95"] == list(wilson_interval(3, 4))
    # Mean rewards are the logger's: the exact answers score 1, the box beside the reference less.
    assert sft["mean_rewards"] == {"total": 1.0, "format": 1.0, "region": 1.0, "trajectory": 1.0}
    assert base["mean_rewards"]["region"] == pytest.approx(region(OFF_BOX)) and region(OFF_BOX) < 1.0
    assert base["mean_rewards"]["total"] == pytest.approx(0.1 + 0.9 * (region(OFF_BOX) + 1.0) / 2)


def test_labels_count_in_the_comparison(tmp_path):
    names = write_trials(tmp_path, SFT, [False, False])
    save_labels(tmp_path, names[0], {"success": True})  # the operator overrules the simulator
    (row,) = compare_checkpoints(outcomes_by_checkpoint([tmp_path]))
    assert (row["n"], row["successes"]) == (2, 1)


def test_report_of_several_logs_compares_their_checkpoints(tmp_path, capsys):
    first, second = tmp_path / "night1", tmp_path / "night2"
    write_trials(first, BASE, [False, False], box=OFF_BOX)
    write_trials(first, SFT, [True, False])
    write_trials(second, SFT, [True, True])  # the same checkpoint and adapter in another log: one run
    write_trials(second, GRPO, [True, True, True])
    assert main(["report", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    page = (first / "comparison.html").read_text(encoding="utf-8")
    assert str(first / "comparison.html") in out
    rows = compare_checkpoints(outcomes_by_checkpoint([first, second]))
    assert [(row["adapter"], row["trials"], row["successes"]) for row in rows] == [
        ("", 2, 0),
        ("/runs/sft/adapter", 4, 3),
        ("/runs/grpo/adapter", 3, 3),
    ]
    # The terminal and the page show each run: its adapter, judged successes, Wilson interval.
    assert "/runs/sft/adapter" in out and "3/4 judged  75.0%" in out and "no adapter" in out
    assert page.count("<tr><td><code>vla_r1:/models/tiny</code></td>") == 3
    low, high = wilson_interval(3, 4)
    assert f"<td>3/4</td><td>75%</td><td>{low:.0%} – {high:.0%}</td>" in page
    assert "<code>/runs/grpo/adapter</code>" in page


def test_report_of_one_log_shows_its_runs_by_checkpoint(tmp_path, capsys):
    write_trials(tmp_path, BASE, [False])
    write_trials(tmp_path, SFT, [True])
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h2>Runs by checkpoint</h2>" in page and "<code>/runs/sft/adapter</code>" in page
    assert page.count("<tr><td><code>vla_r1:/models/tiny</code></td>") == 2


def test_report_refuses_a_folder_that_is_not_a_log_among_several(tmp_path, capsys):
    write_trials(tmp_path / "log", SFT, [True])
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "log"), str(tmp_path / "empty")]) == 2
    assert "empty has no index.jsonl" in capsys.readouterr().out
    assert not (tmp_path / "log" / "comparison.html").exists()
