"""`vla-r1 trials --manual-reset`: the operator's judgement after each trial, through real stdin of a real
`vla-r1 trials` process attached to a running node graph (the simulator stands in for the lab's arm),
or non-interactively from `--judge FILE`; each answer lands in the episode's labels.json at once, so
Ctrl-C loses nothing already judged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vla_r1_ros.core import episodes
from vla_r1_ros.graph import GraphArgs
from vla_r1_ros.launcher import GraphLauncher

INSTRUCTION = "put the red cube in the tray"
RESET_PROMPT = "then press Enter"
SUCCESS_PROMPT = "Did the trial succeed?"
STAGE_PROMPT = "failure stage ("
NOTE_PROMPT = "note (Enter for none)"
ENV = os.environ | {"PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """The simulated graph as a lab's launch would run it; yields the reward logger's log dir."""
    root = tmp_path_factory.mktemp("judging")
    log = root / "episodes"
    with GraphLauncher(GraphArgs(log_dir=str(log), seed=20), root / "logs"):
        yield log


def trials_command(out: Path, n: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vla_r1_ros.cli.main",
        "trials",
        "--manual-reset",
        "--n",
        str(n),
        "--instruction",
        INSTRUCTION,
        "--out",
        str(out),
        "--no-report",
        *extra,
    ]


def new_episodes(log: Path, before: int, count: int, timeout_s: float = 30.0) -> list[str]:
    """The episodes logged after the first `before`, once `count` of them are on disk (or the deadline
    passed): a trial's record reaches the logger on its own, after the trial's result, and a loaded run
    saw `vla-r1 trials` exit before the last one was written."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [entry["episode"] for entry in episodes.read_index(log)][before:]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_judge_file_labels_every_episode_and_the_summary(graph, tmp_path):
    judgements = tmp_path / "judgements.jsonl"
    judgements.write_text(
        '{"success": false, "failure_stage": "grasp", "note": "cube slipped — 5 $ 🙂"}\n\n{"success": true}\n',
        encoding="utf-8",
    )
    before = len(episodes.read_index(graph)) if (graph / episodes.INDEX_FILE).exists() else 0
    out = tmp_path / "run"
    # No --log-dir: the trials ask the reward logger for its log_dir parameter.
    result = subprocess.run(
        trials_command(out, 2, "--judge", str(judgements)),
        input="\n\n",  # the two "reset the scene, then press Enter" prompts
        capture_output=True,
        text=True,
        timeout=400,
        env=ENV,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert f"judgements go into the episodes of {graph.resolve()}" in result.stdout
    first, second = new_episodes(graph, before, 2)
    first_labels = episodes.read_labels(graph, first)
    assert first_labels["success"] is False and first_labels["failure_stage"] == "grasp"
    assert first_labels["note"] == "cube slipped — 5 $ 🙂" and first_labels["outcome_source"] == "operator"
    second_labels = episodes.read_labels(graph, second)
    assert second_labels["success"] is True and second_labels["failure_stage"] == "" and "note" not in second_labels
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judged_by"] == {"operator": 2} and summary["successes"] == 1 and summary["failures"]["grasp"] == 1
    trials = json.loads((out / "trials.json").read_text())
    assert [t["success"] for t in trials] == [False, True] and trials[0]["message"] == "cube slipped — 5 $ 🙂"


def test_bad_judge_file_is_refused_before_anything_moves(tmp_path):
    bad = tmp_path / "bad.jsonl"
    for text, message in (
        ('{"success": false}\n', "failure_stage must be one of"),
        ('{"success": true}\n', "holds 1 judgements for 2 trials"),
        ('{"success": true, "box": [0.5, 0.5, 0.1, 0.1]}\n{"success": true}\n', "unknown key(s) box"),
        ("yes\n{}\n", ":1:"),
    ):
        bad.write_text(text)
        result = subprocess.run(
            trials_command(tmp_path / "run", 2, "--judge", str(bad)),
            capture_output=True,
            text=True,
            timeout=60,
            env=ENV,
        )
        assert result.returncode == 2 and message in result.stderr, (text, result.stderr)
        assert not (tmp_path / "run").exists()


class Terminal:
    """Reads a process's stdout in the background so the test can answer prompts as they appear."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.text = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while chunk := self.process.stdout.read(1):
            with self._lock:
                self.text += chunk

    def answer(self, prompt: str, count: int, line: str, timeout_s: float = 180.0) -> None:
        """Wait until `prompt` has appeared `count` times, then type `line` and Enter."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                seen = self.text.count(prompt)
            if seen >= count:
                break
            assert self.process.poll() is None, f"vla-r1 trials exited early:\n{self.text[-3000:]}"
            assert time.monotonic() < deadline, f"no {prompt!r} #{count} within {timeout_s} s:\n{self.text[-3000:]}"
            time.sleep(0.05)
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def test_interactive_judgement_and_ctrl_c_keeps_what_was_judged(graph, tmp_path):
    before = len(episodes.read_index(graph)) if (graph / episodes.INDEX_FILE).exists() else 0
    out = tmp_path / "run"
    process = subprocess.Popen(
        trials_command(out, 3, "--log-dir", str(graph)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=ENV,
    )
    try:
        terminal = Terminal(process)
        terminal.answer(RESET_PROMPT, 1, "")
        terminal.answer(SUCCESS_PROMPT, 1, "maybe")  # not an answer: asked again
        terminal.answer(SUCCESS_PROMPT, 2, "n")
        terminal.answer(STAGE_PROMPT, 1, "bored")  # not a stage: asked again
        terminal.answer(STAGE_PROMPT, 2, "grasp")
        terminal.answer(NOTE_PROMPT, 1, "missed by 2 cm 💥 $x")
        terminal.answer(RESET_PROMPT, 2, "")
        terminal.answer(SUCCESS_PROMPT, 3, "y")
        terminal.answer(NOTE_PROMPT, 2, "")
        terminal.answer(RESET_PROMPT, 3, "")  # the third trial starts ...
        terminal.answer(SUCCESS_PROMPT, 4, "y", timeout_s=180.0)
        process.send_signal(signal.SIGINT)  # ... and is interrupted while its note is asked
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert "interrupted: every judgement given so far is saved" in stderr
    judged = new_episodes(graph, before, 3)
    assert len(judged) == 3  # the third trial ran and was logged, but not judged
    first, second, third = (episodes.read_labels(graph, episode) for episode in judged)
    assert first["success"] is False and first["failure_stage"] == "grasp" and first["note"] == "missed by 2 cm 💥 $x"
    assert second["success"] is True and second["outcome_source"] == "operator"
    assert third is None
    assert not (out / "summary.json").exists()


def test_closed_stdin_stops_the_run_without_a_made_up_judgement(graph, tmp_path):
    before = len(episodes.read_index(graph)) if (graph / episodes.INDEX_FILE).exists() else 0
    result = subprocess.run(
        trials_command(tmp_path / "run", 2, "--log-dir", str(graph)),
        input="\n",  # the scene is reset, then the terminal goes away before the judgement
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "standard input closed: every judgement given so far is saved" in result.stderr
    (episode,) = new_episodes(graph, before, 1)
    assert episodes.read_labels(graph, episode) is None
