"""Start the graph's processes without launch_ros: what `vla-r1 demo` uses on a machine with no ROS install.

It consumes exactly the `launch_ros.actions.Node` keyword arguments of `graph.ProcessSpec.launch_kwargs`
and does what launch_ros does with them: the prefix (`die_with_launcher`: each process dies with this
one, even on SIGKILL), the executable (the package's console script, run as
`python -m vla_r1_ros.nodes.<executable>`), `--ros-args` with the node name, remappings and a
parameters file, and respawn. Processes of other packages (robot_state_publisher, rviz2) need a ROS
install and are reported as skipped. With record:=true the package's recorder node stands in for
rosbag2's `ros2 bag record` (which the launch file runs): the same topics into the same bag folder.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vla_r1_ros.graph import PACKAGE, GraphArgs, ProcessSpec, Recording, build_graph, recording


def process_command(kwargs: dict[str, Any], params_dir: Path) -> list[str]:
    """The command line launch_ros would run for these `Node(**kwargs)` (launch splits `prefix` with shlex)."""
    command = [
        *shlex.split(kwargs.get("prefix", "")),
        sys.executable,
        "-m",
        f"{PACKAGE}.nodes.{kwargs['executable']}",
        *kwargs.get("arguments", []),
    ]
    ros_args: list[str] = []
    name = kwargs.get("name")
    if name:
        ros_args += ["-r", f"__node:={name}"]
    for source, target in kwargs.get("remappings", []):
        ros_args += ["-r", f"{source}:={target}"]
    ros_args += kwargs.get("ros_arguments", [])
    parameters: dict[str, Any] = {}
    for block in kwargs.get("parameters", []):
        parameters.update(block)
    if parameters:
        params_file = params_dir / f"{name}.params.yaml"
        params_file.write_text(yaml.safe_dump({name: {"ros__parameters": parameters}}))
        ros_args += ["--params-file", str(params_file)]
    return command + (["--ros-args", *ros_args] if ros_args else [])


@dataclass
class RunningProcess:
    spec: ProcessSpec
    command: list[str]
    log_path: Path
    env: dict[str, str]  # added to this process's environment, as launch's `additional_env`
    popen: subprocess.Popen | None = None
    restarts: int = 0
    died_at: float | None = None  # monotonic time the watcher saw it exit (respawned after the delay)


@dataclass
class GraphLauncher:
    """Runs this package's processes of the graph; logs go to `log_dir/<process>.log`."""

    args: GraphArgs
    log_dir: Path
    processes: list[RunningProcess] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recording: Recording | None = None  # record:=true: the bag being written, from `start`
    _stopping: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.recording = recording(self.args)
        recorder = [self.recording.recorder_process()] if self.recording else []
        for spec in build_graph(self.args) + recorder:
            if spec.package != PACKAGE:
                self.skipped.append(f"{spec.package}/{spec.nodes[0].executable}")
                continue
            kwargs = spec.launch_kwargs(self.args)
            running = RunningProcess(
                spec,
                process_command(kwargs, self.log_dir),
                self.log_dir / f"{spec.name}.log",
                dict(kwargs["additional_env"]),
            )
            self._spawn(running)
            self.processes.append(running)
        self._watcher = threading.Thread(target=self._watch, name="graph-watcher", daemon=True)
        self._watcher.start()

    def _spawn(self, running: RunningProcess) -> None:
        log = open(running.log_path, "ab")  # noqa: SIM115 - the child process owns it for its lifetime
        # A new session per child: Ctrl-C in the terminal reaches only `vla-r1`, which stops the children
        # in order (SIGINT first, so rclpy shuts down cleanly).
        running.popen = subprocess.Popen(
            running.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ | running.env,
            start_new_session=True,
        )
        log.close()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for running in self.processes:
                if running.popen.poll() is None or not running.spec.respawn:
                    continue
                now = time.monotonic()
                running.died_at = running.died_at or now
                if now - running.died_at >= running.spec.respawn_delay_s:  # as launch's respawn_delay
                    running.restarts += 1
                    running.died_at = None
                    self._spawn(running)

    def failed(self) -> list[str]:
        """Processes that exited on their own (and do not respawn), with the tail of their log."""
        dead = []
        for running in self.processes:
            code = running.popen.poll()
            if code is not None and not running.spec.respawn and not self._stopping.is_set():
                tail = running.log_path.read_text(errors="replace").splitlines()[-15:]
                dead.append(f"{running.spec.name} exited with {code}:\n" + "\n".join(tail))
        return dead

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        for running in self.processes:
            if running.popen.poll() is None:
                running.popen.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for running in self.processes:
            try:
                running.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                running.popen.kill()
                running.popen.wait()

    def __enter__(self) -> GraphLauncher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
