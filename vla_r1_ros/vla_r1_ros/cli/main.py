"""`vla-r1`: one entry point, one subcommand per tool.

Each subcommand lives in its own module with `configure(parser)` and `run(args) -> int`; modules are
imported only when their subcommand runs, so `vla-r1 --help` stays fast (no torch, no rclpy).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order is the order `vla-r1 --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "parse": ("vla_r1_ros.cli.parse", "parse raw VLA-R1 text (stdin) into JSON: reasoning, box, waypoints"),
    "reward": ("vla_r1_ros.cli.reward", "score JSON-lines completions with VLA-R1's verifiable rewards"),
    "eval": ("vla_r1_ros.cli.evaluate", "paper metrics (IoU, DFD, HD, RMSE) over a JSONL file"),
    "lift": ("vla_r1_ros.cli.lift", "lift a parsed prediction to 3-D through a depth image"),
    "replay-plan": (
        "vla_r1_ros.cli.replay_plan",
        "re-run lifting, planning and validation offline on a logged episode (why was it refused?)",
    ),
    "sim": ("vla_r1_ros.cli.sim", "open or render the simulated workcell"),
    "make-test-model": ("vla_r1_ros.cli.make_test_model", "build a tiny random Qwen2.5-VL checkpoint offline"),
    "demo": ("vla_r1_ros.cli.demo", "start the node graph (what demo.launch.py starts) and run trials"),
    "trials": ("vla_r1_ros.cli.trials", "run teleop-free pick-and-place trials through the node graph"),
    "doctor": (
        "vla_r1_ros.cli.doctor",
        "check a cell before a night: camera, extrinsics, tray, arm, gripper, log, DDS",
    ),
    "objects": (
        "vla_r1_ros.cli.objects",
        "register the cell's objects (one click each) for the camera judge and the self-reset; show a registry",
    ),
    "sweep": ("vla_r1_ros.cli.sweep", "trials over a grid of policy error levels: success-vs-error curves"),
    "report": ("vla_r1_ros.cli.report", "write the HTML evaluation report of an episode log"),
    "label": ("vla_r1_ros.cli.label", "web page to review episodes and label outcome, reference box and path"),
    "export-dataset": ("vla_r1_ros.cli.export_dataset", "export logged episodes as a VLA-R1 / HF dataset"),
    "train-sft": ("vla_r1_ros.cli.train_sft", "chain-of-thought SFT with TRL on an exported dataset"),
    "train-grpo": ("vla_r1_ros.cli.train_grpo", "GRPO fine-tuning with TRL on an exported dataset"),
    "bench": ("vla_r1_ros.cli.bench", "benchmarks: rewards | inference | pipeline | soak"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-r1", description="VLA-R1 on a ROS 2 robot arm: tools around the node graph."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        top.parse_args(argv)  # prints help, or the usage error with exit code 2
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"vla-r1 {name}", description=COMMANDS[name][1])
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
