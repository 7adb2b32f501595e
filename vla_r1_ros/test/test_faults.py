"""Faults a night of unattended trials meets, injected into the real node graph (`vla-r1 trials` in its
own process, every node a real process over DDS).

- a graph started with no DDS settings keeps discovery on this machine (LOCALHOST);
- kill -9 of the reward logger mid-run: the launcher respawns it, the planning node delivers the records
  it kept, the store writes each trial once: every trial runs and every episode is logged whole, once;
- kill -9 of the planning process (the simulator's `sim_stack`) while a finished trial cannot reach the
  stopped logger: the record is in the planning node's spool, the launcher respawns the process, which
  delivers it once the logger runs again; the trial that was running is `internal` (never the policy's
  failure) and the run goes on to its last trial;
- the log's disk fills up mid-run, then has room again: the console names the cause as the first trial
  that cannot be logged ends, the planning node keeps the records (pixels included) and they are logged,
  whole and once, when the disk has room; the run waits for them and ends with its summary. The disk is
  a tmpfs of its own (mounting one needs root: elsewhere the test is skipped). A read-only disk is not
  tried here: a tmpfs with the log's index open for writing cannot be remounted read-only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vla_r1_ros.core.delivery import SPOOL_SUFFIX
from vla_r1_ros.core.episodes import read_index
from vla_r1_ros.core.episodes.layout import PLANNING_SPOOL_DIR, TMP_PREFIX

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


def run_trials(out: Path, n: int, seed: int, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "vla_r1_ros.cli.main", "trials", "--n", str(n), "--seed", str(seed)]
    return subprocess.Popen(
        [*command, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or dict(os.environ)
    )


def test_kill_9_of_the_logger_mid_run_loses_no_trial_and_logs_none_twice(tmp_path):
    out = tmp_path / "run"
    # No discovery range given: the graph `vla-r1 trials` starts must keep DDS on this machine by itself.
    env = {k: v for k, v in os.environ.items() if k != "ROS_AUTOMATIC_DISCOVERY_RANGE"}
    run = run_trials(out, TRIALS, 40, env)
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


def test_kill_9_of_the_planning_process_mid_run_loses_no_finished_trial(tmp_path):
    out = tmp_path / "run"
    run = run_trials(out, TRIALS, 50)
    console = Console(run)
    try:
        deadline = time.monotonic() + 240
        while len(read_index(out)) < 1:  # the first trial is on disk
            assert run.poll() is None and time.monotonic() < deadline, console.text()[-3000:]
            time.sleep(0.1)
        (logger_pid,) = processes_with("vla_r1_ros.nodes.reward_logger_node", str(out))
        os.kill(logger_pid, signal.SIGSTOP)  # finished trials now wait in the planning node
        try:
            spool = out / PLANNING_SPOOL_DIR
            # Only a spooled record (renamed into place once durable), not one being written: a kill then
            # ends a trial that never finished, which the run rightly reports as the planning process's death.
            while not (
                spooled := sorted(p for p in spool.glob(f"*{SPOOL_SUFFIX}") if not p.name.startswith(TMP_PREFIX))
            ):
                assert run.poll() is None and time.monotonic() < deadline, console.text()[-3000:]
                time.sleep(0.05)
            spooled_trials = [path.name.split("-", 1)[1].removesuffix(SPOOL_SUFFIX) for path in spooled]
            (planning_pid,) = processes_with("vla_r1_ros.nodes.stack", "sim_stack", str(out))
            os.kill(planning_pid, signal.SIGKILL)  # the only copy of that trial is now on disk
        finally:
            os.kill(logger_pid, signal.SIGCONT)
        run.wait(timeout=400)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    output = console.text()
    assert run.returncode == 0, output[-3000:]
    logged = [entry["trial_id"] for entry in read_index(out)]
    assert set(spooled_trials) <= set(logged) and len(set(logged)) == len(logged), (spooled_trials, logged)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == TRIALS and "stopped" not in summary and "unlogged" not in summary, summary
    assert summary["failures"].get("internal") is None  # the killed trial is not the policy's failure
    stack_log = (out / "logs" / "sim_stack.log").read_text(errors="replace")
    assert "spooled by an earlier planning process are delivered first" in stack_log


@contextlib.contextmanager
def disk_of_its_own(path: Path, size: str = "64m"):
    """A tmpfs mounted at `path`: a disk the test can fill and make read-only without touching others."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"a full disk needs a tmpfs of its own, and mount refused: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(path: Path) -> None:
    """Write zeros into `path` until the disk has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, bytes(1 << 20))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


class Console:
    """A process's output, line by line, as it comes."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line.decode(errors="replace").rstrip())

    def wait_for(self, *words: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if all(word in line for word in words):
                    return line
            time.sleep(0.1)
        raise AssertionError(f"no line with {words} in {timeout_s} s:\n" + "\n".join(self.lines[-40:]))

    def text(self) -> str:
        self._reader.join(timeout=10)
        return "\n".join(self.lines)


def test_a_full_log_disk_is_named_at_once_and_loses_no_trial(tmp_path):
    trials = 3
    with disk_of_its_own(tmp_path / "run") as out:
        (out / "logs").symlink_to(tmp_path.joinpath("logs"), target_is_directory=True)  # node logs elsewhere
        tmp_path.joinpath("logs").mkdir()
        run = run_trials(out, trials, 70)
        console = Console(run)
        try:
            deadline = time.monotonic() + 240
            while len(read_index(out)) < 1:  # the first trial is on disk: the disk fills up
                assert run.poll() is None and time.monotonic() < deadline, console.text()[-3000:]
                time.sleep(0.1)
            fill(out / "filler")
            # Told as the first trial that cannot be logged ends, with the logger's own words.
            console.wait_for("episodes are not being logged", "disk full", timeout_s=60)
            assert len(read_index(out)) == 1
            (out / "filler").unlink()  # room again: every kept record is logged without anyone asking
            console.wait_for("episodes are logged again", timeout_s=60)
            run.wait(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        output = console.text()
        assert run.returncode == 0, output[-3000:]
        entries = read_index(out)
        assert len(entries) == trials and len({e["trial_id"] for e in entries}) == trials, output[-3000:]
        for entry in entries:
            assert entry["has_color"] and entry["has_depth"] and entry["reference_source"] == "simulator", entry
            assert {p.name for p in (out / "episodes" / entry["episode"]).iterdir()} >= {"color.png", "depth.png"}
        summary = json.loads((out / "summary.json").read_text())
        assert summary["n"] == trials and summary["successes"] == trials
        assert "stopped" not in summary and "unlogged" not in summary
