"""Every process of the graph dies with the process that launched it, however that one ends: real process
trees, the launcher killed with SIGKILL (nothing of it runs to clean up), the children watched until
they are gone. No test doubles."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from vla_r1_ros.die_with_launcher import launch_prefix

DEADLINE_S = 60.0  # a node's clean shutdown on SIGTERM takes a second or two on a loaded 2-core machine
STARTUP_DEADLINE_S = 180.0  # the simulated graph starting while other jobs load both cores


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_until(condition, what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.05)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


def _start_launcher(script: str, *args: str) -> tuple[subprocess.Popen, list[int]]:
    """A launcher process running `script`, which prints the pids of the children it started as JSON."""
    launcher = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE, text=True
    )
    line = launcher.stdout.readline()
    assert line, f"the launcher exited with {launcher.wait()} before starting anything"
    return launcher, json.loads(line)


def _kill_9_and_expect_children_gone(launcher: subprocess.Popen, children: list[int]) -> None:
    try:
        assert all(_alive(pid) for pid in children)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        _wait_until(lambda: not any(_alive(pid) for pid in children), f"children {children} end with their launcher")
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_demo_graph_dies_with_vla_r1_demo_killed_with_sigkill(tmp_path):
    """The graph as `vla-r1 demo` starts it (its GraphLauncher: simulator stack, inference, reward logger)."""
    launcher, children = _start_launcher(
        """
        import json, sys, time
        from pathlib import Path
        from vla_r1_ros.graph import GraphArgs
        from vla_r1_ros.launcher import GraphLauncher

        launcher = GraphLauncher(GraphArgs(log_dir=sys.argv[1]), Path(sys.argv[2]))
        launcher.start()
        print(json.dumps([running.popen.pid for running in launcher.processes]), flush=True)
        time.sleep(3600)
        """,
        str(tmp_path / "run"),
        str(tmp_path / "logs"),
    )
    # Killed once every child runs its node (past the die_with_launcher prefix, which execs into it) and
    # the reward logger has started: the nodes are up, not still starting.
    _wait_until(
        lambda: all(
            "vla_r1_ros.nodes." in _cmdline(pid) and "die_with_launcher" not in _cmdline(pid) for pid in children
        ),
        "every process runs its node",
        STARTUP_DEADLINE_S,
    )
    logger_log = tmp_path / "logs" / "reward_logger.log"
    _wait_until(
        lambda: logger_log.is_file() and "logging episodes to" in logger_log.read_text(),
        "the logger is up",
        STARTUP_DEADLINE_S,
    )
    _kill_9_and_expect_children_gone(launcher, children)


def test_another_packages_program_dies_with_its_launcher_killed_with_sigkill():
    """A non-Python program (as robot_state_publisher or rviz2 are) started with the prefix launch_ros is
    given, the way launch runs a prefix: split with shlex, the command after it."""
    launcher, children = _start_launcher(
        """
        import json, os, shlex, subprocess, sys, time
        from vla_r1_ros.die_with_launcher import launch_prefix

        child = subprocess.Popen([*shlex.split(launch_prefix(os.getpid())), "sleep", "600"])
        print(json.dumps([child.pid]), flush=True)
        time.sleep(3600)
        """
    )
    _wait_until(lambda: _cmdline(children[0]).startswith("sleep 600"), "the prefix has exec'd the program")
    _kill_9_and_expect_children_gone(launcher, children)


def test_a_process_whose_launcher_is_already_gone_does_not_start():
    """The launcher died between starting the child and the child asking to die with it: the child sees
    it has a different parent and exits instead of running orphaned."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    started = time.monotonic()
    child = subprocess.run(
        [*shlex.split(launch_prefix(gone.pid)), "sleep", "600"], capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert child.returncode == 1 and time.monotonic() - started < DEADLINE_S
    assert f"the launcher (pid {gone.pid}) ended before this process started: not starting sleep" in child.stderr
