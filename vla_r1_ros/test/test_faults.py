"""Faults a night of unattended trials meets, injected into the real node graph (`vla-r1 trials` in its
own process, every node a real process over DDS).

- a graph started with no DDS settings keeps discovery on this machine (LOCALHOST);
- kill -9 of the reward logger mid-run: the launcher respawns it, the planning node delivers the records
  it kept, the store writes each trial once: every trial runs and every episode is logged whole, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vla_r1_ros.core.episodes import read_index

TRIALS = 4


def processes_with(*words: str) -> list[int]:
    """Pids whose command line contains every word."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(word in cmdline for word in words):
            found.append(int(entry.name))
    return found


def test_kill_9_of_the_logger_mid_run_loses_no_trial_and_logs_none_twice(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "vla_r1_ros.cli.main", "trials", "--n", str(TRIALS), "--seed", "40"]
    # No discovery range given: the graph `vla-r1 trials` starts must keep DDS on this machine by itself.
    env = {k: v for k, v in os.environ.items() if k != "ROS_AUTOMATIC_DISCOVERY_RANGE"}
    run = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 240
        while len(read_index(out)) < 1:  # the first trial is on disk: kill the logger in the middle of the run
            assert run.poll() is None and time.monotonic() < deadline, "the run never logged a first episode"
            time.sleep(0.1)
        (logger_pid,) = processes_with("vla_r1_ros.nodes.reward_logger_node", str(out))
        environ = Path(f"/proc/{logger_pid}/environ").read_bytes().split(b"\0")
        assert b"ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in environ
        os.kill(logger_pid, signal.SIGKILL)
        output, _ = run.communicate(timeout=360)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, output.decode(errors="replace")[-3000:]
    assert logger_pid not in processes_with("vla_r1_ros.nodes.reward_logger_node", str(out))

    entries = read_index(out)
    assert len(entries) == TRIALS and len({e["trial_id"] for e in entries}) == TRIALS  # all, each once
    for entry in entries:
        assert entry["has_color"] and entry["has_depth"] and entry["reference_source"] == "simulator", entry
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == TRIALS and summary["successes"] == TRIALS, summary["failures"]
    log = (out / "logs" / "reward_logger.log").read_text(errors="replace")
    assert log.count("logging episodes to") == 2  # the first logger and the one the launcher respawned
