"""The exception channel of an unattended run (`operator_channel.OperatorChannel`) through real shell
commands, and what summary.json says of the camera judge (`core.trials.vision_judge_agreement`)."""

from __future__ import annotations

import json

from vla_r1_ros.core.trials import TrialOutcome, summarize, vision_judge_agreement
from vla_r1_ros.operator_channel import OperatorChannel


def outcome(index: int = 0, **kwargs) -> TrialOutcome:
    return TrialOutcome(index, 0, "put the red cube in the tray", "red_cube", False, episode_id="t1", **kwargs)


def test_a_command_gets_the_event_as_json_and_answers_with_a_judgement_line(tmp_path):
    seen = tmp_path / "event.json"
    answer = '{"success": false, "failure_stage": "place", "note": "on the rim"}'
    channel = OperatorChannel(f"cat > {seen}; echo '{answer}'", console=False)
    judgement = channel.ask(outcome(message="camera: cannot judge: no after frame set"), str(tmp_path))
    assert judgement == {"success": False, "failure_stage": "place", "note": "on the rim"}
    event = json.loads(seen.read_text())
    assert event["event"] == "judge" and event["episode_id"] == "t1" and "no after frame set" in event["message"]


def test_a_command_that_prints_nothing_or_nonsense_leaves_the_trial_not_judged(tmp_path, capsys):
    assert OperatorChannel("true", console=False).ask(outcome(), str(tmp_path)) is None
    assert OperatorChannel("echo maybe", console=False).ask(outcome(), str(tmp_path)) is None
    assert "not judged" in capsys.readouterr().err


def test_a_failed_reset_call_is_answered_by_the_command_exit_status(tmp_path):
    seen = tmp_path / "event.json"
    assert OperatorChannel(f"cat > {seen}", console=False).call("3 self-resets failed in a row")
    assert json.loads(seen.read_text()) == {"event": "reset_failed", "reason": "3 self-resets failed in a row"}
    assert not OperatorChannel("exit 3", console=False).call("3 self-resets failed in a row")


def test_nobody_attached_answers_nothing_and_the_console_asks(monkeypatch):
    nobody = OperatorChannel("", console=False)
    assert not nobody.attached and nobody.ask(outcome(), "/tmp") is None and not nobody.call("x")
    answers = iter(["n", "grasp", "slipped", ""])
    console = OperatorChannel("", console=True, ask=lambda prompt: next(answers))
    assert console.ask(outcome(), "/tmp") == {"success": False, "failure_stage": "grasp", "note": "slipped"}
    assert console.call("3 self-resets failed")  # Enter once the scene is back


def test_the_summary_audits_the_camera_against_the_simulator():
    def judged(index, camera, simulator, asks=False):
        return outcome(
            index,
            vision_judge={"judged": not asks, "success": camera, "asks_operator": asks},
            simulator_success=simulator,
        )

    outcomes = [
        judged(0, True, True),
        judged(1, False, False),
        judged(2, True, False),  # a false success: the one error that flatters a policy
        judged(3, False, True),
        judged(4, False, True, asks=True),  # handed to the operator: not the camera's verdict
        outcome(5),  # judged by the simulator only (no camera): not counted
    ]
    agreement = vision_judge_agreement(outcomes)
    assert agreement == {
        "n": 4,
        "agree": 2,
        "agreement": 0.5,
        "false_success": 1,
        "false_failure": 1,
        "asked_operator": 1,
        "judged_without_simulator": 0,
    }
    assert summarize(outcomes)["vision_judge"] == agreement
    assert "vision_judge" not in summarize([outcome(0)])
