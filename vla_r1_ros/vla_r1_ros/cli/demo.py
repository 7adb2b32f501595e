"""`vla-r1 demo`: start the node graph that `ros2 launch vla_r1_ros demo.launch.py` starts, without
launch_ros, and run teleop-free trials in the simulator (what `make demo` runs). With `--n 0` it just
keeps the graph running until Ctrl-C."""

from __future__ import annotations

import argparse

from vla_r1_ros.cli import trials


def configure(parser: argparse.ArgumentParser) -> None:
    trials.configure(parser, default_n=20, default_out="runs/demo")


def run(args: argparse.Namespace) -> int:
    return trials.run_trials(args, keep_running=args.n == 0 and not args.scenes)
