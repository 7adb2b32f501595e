"""Every reader of a log — summary, `vla-r1 report`, `vla-r1 eval`, `export-dataset`, the label page — takes
an episode's outcome from `core.outcomes.episode_outcome` (through `core.labels.labelled_episodes`): an
executed real-arm trial nobody judged is "not judged" in all of them, and a judgement in labels.json is
what all of them use. The episodes are written by the real EpisodeStore as the reward logger writes a
MoveIt trial (executed, outcome_source `none`, no scene so no reference), plus one an older MoveIt
executor logged with the non-value outcome_source "executor"."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_episodes import BOX, PATH, frame, trial

from vla_r1_ros.cli.main import main
from vla_r1_ros.core import dataset, labels
from vla_r1_ros.core.annotate import SHOWN_TEXT_CHARS
from vla_r1_ros.core.episodes import EpisodeStore, References, ReferenceSource, select_references
from vla_r1_ros.core.outcomes import OutcomeSource
from vla_r1_ros.core.trials import TrialOutcome, summarize
from vla_r1_ros.report import log_summary

EXECUTED = "pick-and-place motion executed"


@pytest.fixture
def log(tmp_path):
    """000001: an executed MoveIt trial (success claimed by nobody); 000002: the same from an older
    executor that wrote outcome_source "executor"."""
    root = tmp_path / "log"
    with EpisodeStore(root) as store:
        for source in (OutcomeSource.NONE, "executor"):
            executed = replace(trial(), outcome_source=source, message=EXECUTED)
            store.write(executed, frame(), select_references(executed))
    return root


def report_html(log, capsys) -> str:
    assert main(["report", str(log)]) == 0
    capsys.readouterr()
    return (log / "report.html").read_text(encoding="utf-8")


def evaluated(log, capsys) -> dict:
    assert main(["eval", str(log)]) == 0
    return json.loads(capsys.readouterr().out)


def test_an_executed_trial_nobody_judged_is_not_judged_by_any_reader(log, tmp_path, capsys):
    logged = list(labels.labelled_episodes(log))
    assert [e.outcome.judged for e in logged] == [False, False] and not any(e.outcome.success for e in logged)
    # Its own answer is no reference: no task reward (the logger scored none, and neither does a reader).
    assert all(e.rewards["total"] is None and e.references.source == "none" for e in logged)

    summary = summarize(labels.trial_outcomes_from_log(log))
    assert (summary["n"], summary["successes"], summary["judged_by"]) == (0, 0, {})
    assert summary["not_judged"] == {"awaiting judgement": 2} and summary["mean_rewards"]["total"] is None

    html = report_html(log, capsys)
    assert html.count("not judged (awaiting judgement)") == 2 and 'class="ok"' not in html
    assert "(0 judged by nobody)" in html

    assert evaluated(log, capsys)["outcomes"] == {"episodes": 2, "judged": 0, "successes": 0, "judged_by": {}}

    with pytest.raises(dataset.ExportError, match="not judged a success"):
        dataset.export_dataset(log, tmp_path / "export", only_success=True)

    assert [(s["success"], s["judged"]) for s in labels.episode_summaries(log)] == [(False, False)] * 2
    view = labels.episode_view(log, "000001")
    assert view["outcome"]["judged"] is False and view["outcome"]["success"] is False
    assert view["rewards"]["success"] is False and view["rewards"]["total"] is None


def test_a_judgement_in_labels_json_is_used_by_every_reader(log, tmp_path, capsys):
    labels.save_labels(log, "000001", {"success": True, "box": list(BOX), "waypoints": [list(p) for p in PATH]})
    labels.save_labels(log, "000002", {"success": False, "failure_stage": "place", "note": "missed the tray"})

    summary = summarize(labels.trial_outcomes_from_log(log))
    assert (summary["n"], summary["successes"], summary["judged_by"]) == (2, 1, {"operator": 2})
    assert summary["failures"]["place"] == 1 and summary["not_judged"] == {}
    assert summary["mean_rewards"]["region"] == pytest.approx(1.0)  # scored against the operator's box

    html = report_html(log, capsys)
    assert '<span class="ok">success</span> <span class="muted">judged by operator</span>' in html
    assert 'failed at place</span> <span class="muted">judged by operator' in html and "missed the tray" in html
    assert "not judged (" not in html

    scores = evaluated(log, capsys)
    assert scores["outcomes"] == {"episodes": 2, "judged": 2, "successes": 1, "judged_by": {"operator": 2}}
    assert scores["reference_sources"] == {"operator": 2} and scores["affordance"]["n"] == 1

    exported = dataset.export_dataset(log, tmp_path / "export", only_success=True)
    assert exported.episodes == 1 and exported.skipped["failed trial"] == 1

    view = labels.episode_view(log, "000001")
    assert view["outcome"] == {
        "success": True,
        "failure_stage": "",
        "message": "",
        "outcome_source": "operator",
        "judged": True,
    }


def test_the_report_recounts_a_run_with_the_judgements_given_since(log, capsys):
    """`vla-r1 report` on a run folder: the run's summary.json was written before anybody judged; the
    recount takes the labels, keeps what the run said about itself and the run's layout seeds."""
    trial_ids = [e.document["trial_id"] for e in labels.labelled_episodes(log)]
    ran = [
        TrialOutcome(i, 40 + i, "put the red cube in the tray", "", True, message=EXECUTED, episode_id=trial_id)
        for i, trial_id in enumerate(trial_ids)
    ]
    ran.append(TrialOutcome(2, 42, "put the red cube in the tray", "", False, "timeout", episode_id="never-logged"))
    (log / "summary.json").write_text(json.dumps(summarize(ran) | {"policy": "vla_r1", "executor": "moveit"}))
    (log / "trials.json").write_text(json.dumps([outcome.to_json() for outcome in ran]))
    labels.save_labels(log, "000002", {"success": True})

    summary = log_summary(log)
    assert summary["trials"] == 3 and (summary["n"], summary["successes"]) == (1, 1)
    assert summary["judged_by"] == {"operator": 1} and summary["not_judged"] == {"awaiting judgement": 1, "timeout": 1}
    assert summary["policy"] == "vla_r1" and set(summary["per_scene"]) == {"41"}
    assert "(1 judged by operator 1)" in report_html(log, capsys)


def two_episode_log(root, text: str):
    """A judged episode, then one whose instruction and message carry `text`."""
    with EpisodeStore(root) as store:
        for instruction, message in (("put the red cube in the tray", ""), (text, text)):
            judged = replace(trial(instruction=instruction), outcome_source=OutcomeSource.SIMULATOR, message=message)
            store.write(judged, frame(), References(ReferenceSource.SIMULATOR, BOX, PATH, target="red_cube"))
    return root


def test_a_megabyte_of_logged_text_is_drawn_capped(tmp_path, capsys):
    """A 1 MB instruction and message (bad input a log can hold) used to keep `vla-r1 report` running for
    more than 120 s at 11 GB, in matplotlib's layout of the chart label. Now the report and the label
    page show it cut (`annotate.capped`); what they hand out stays small whatever the log holds."""
    huge = "put the red cube in the tray " + "x" * 1_000_000
    root = two_episode_log(tmp_path / "huge", huge)
    html = report_html(root, capsys)
    plain = report_html(two_episode_log(tmp_path / "plain", "put the blue cube in the tray"), capsys)
    assert len(html) - len(plain) < 6 * SHOWN_TEXT_CHARS  # the capped text, not a megabyte of it
    assert "x" * (SHOWN_TEXT_CHARS + 1) not in html and "more characters)" in html
    view = json.dumps(labels.episode_view(root, "000002")) + json.dumps(labels.episode_summaries(root))
    assert len(view) < 10 * SHOWN_TEXT_CHARS and "more characters)" in view
