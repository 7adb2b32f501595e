"""`vla-r1 bench autonomy`: the figures a lab needs before it trusts a night of unattended trials.

It runs the very command a lab runs, `vla-r1 trials --reset self --judge vision`, in the simulator with
the scripted expert at a stated error model (default `paper,wrong_object=0.1`: the paper's errors and
one trial in ten on the wrong object, so the camera judge sees every kind of outcome), with nobody
attached (stdin closed, no `--on-exception`): a trial the camera hands over stays not judged, and three
failed self-resets are answered by the simulator standing in for the person (`--stand-in-operator`: its
teleport back to the first layout), so the night goes on and every call is counted. Then it reads the
run's own summary and log:
- the camera judge against the physics: agreement on the trials it judged, false successes (the error
  that flatters a policy), false failures, trials it handed to the operator;
- the self-resets: attempts, successes, operator calls, teleports (the first layout only);
- trials per hour (wall clock, resets included), episodes lost or incomplete (a finished trial whose
  episode is not in the log or lacks its frames), and the resident memory of the run's process tree
  sampled every second (at the first and last logged episode, the peak; growth per trial by least squares
  after `--warmup`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_NOISE = "paper,wrong_object=0.1"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=200, help="unattended trials (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="the first layout's seed")
    parser.add_argument("--noise", default=DEFAULT_NOISE, help=f"the scripted expert's error model ({DEFAULT_NOISE})")
    parser.add_argument("--warmup", type=int, default=5, help="trials left out of the memory slope (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-autonomy"), help="the run's folder")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (MB)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):  # a process that ended meanwhile
            total += process.memory_info().rss
    return total / 1e6


def log_integrity(out: Path, trials: list[dict]) -> dict:
    """Finished trials whose episode is missing from the log, or is there without its frames."""
    from vla_r1_ros.core.episodes import read_index

    index = {entry["trial_id"]: entry for entry in read_index(out)}
    finished = [t for t in trials if t.get("episode_id")]
    lost = [t["episode_id"] for t in finished if t["episode_id"] not in index]
    incomplete = [
        t["episode_id"]
        for t in finished
        if t["episode_id"] in index
        and not (index[t["episode_id"]]["has_color"] and index[t["episode_id"]]["has_depth"])
    ]
    return {"finished": len(finished), "lost": lost, "incomplete": incomplete}


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and any(args.out.iterdir()):
        print(f"vla-r1 bench autonomy: {args.out} is not empty; choose another --out", file=sys.stderr)
        return 2
    command = [
        sys.executable,
        "-m",
        "vla_r1_ros.cli.main",
        "trials",
        *("--n", str(args.trials), "--seed", str(args.seed), "--noise", args.noise),
        *("--reset", "self", "--judge", "vision", "--stand-in-operator", "--out", str(args.out), "--no-report"),
    ]
    print("running:", " ".join(command[2:]), flush=True)
    started = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    per_episode: list[float] = []  # MB, sampled as each episode reaches the log
    peak = [0.0]

    def sample() -> None:
        index = args.out / "index.jsonl"
        while process.poll() is None:
            rss = tree_rss_mb(process.pid)
            peak[0] = max(peak[0], rss)
            logged = len(index.read_text().splitlines()) if index.exists() else 0
            per_episode.extend([rss] * (logged - len(per_episode)))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    status = process.wait()
    wall_s = time.monotonic() - started
    sampler.join(timeout=5.0)
    try:
        summary = json.loads((args.out / "summary.json").read_text())
        trials = json.loads((args.out / "trials.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"vla-r1 bench autonomy: the run (exit {status}) left no summary: {exc}", file=sys.stderr)
        return 1
    figures = {
        "command": " ".join(command[2:]),
        "exit_status": status,
        "trials": summary["trials"],
        "stopped": summary.get("stopped", ""),
        "vision_judge": summary.get("vision_judge"),
        "self_reset": summary.get("self_reset"),
        "success_rate": summary["success_rate"],
        "judged_by": summary["judged_by"],
        "failures": {k: v for k, v in summary["failures"].items() if v},
        "wall_s": wall_s,
        "trials_per_hour": summary["trials"] / (wall_s / 3600.0) if wall_s else 0.0,
        "log": log_integrity(args.out, trials),
        "memory_mb": memory_figures(per_episode, peak[0], args.warmup),
    }
    print(format_figures(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if status == 0 else 1


def memory_figures(per_episode: list[float], peak: float, warmup: int) -> dict:
    """The run's resident memory as its first and last episodes were logged, its peak, and the growth per
    trial after `warmup` trials (least squares over the episodes)."""
    if not per_episode:
        return {}
    kept = per_episode[warmup:]
    slope = float(np.polyfit(np.arange(len(kept)), kept, 1)[0]) if len(kept) >= 2 else None
    return {"first": per_episode[0], "peak": peak, "last": per_episode[-1], "per_trial": slope}


def format_figures(figures: dict) -> str:
    judge, reset, log, memory = (
        figures["vision_judge"] or {},
        figures["self_reset"] or {},
        figures["log"],
        figures["memory_mb"],
    )
    agreement = judge.get("agreement")
    lines = [
        f"trials            {figures['trials']} in {figures['wall_s']:.0f} s: {figures['trials_per_hour']:.0f} per hour"
        + (f" (stopped: {figures['stopped']})" if figures["stopped"] else ""),
        f"camera judge      agrees on {judge.get('agree', 0)}/{judge.get('n', 0)}"
        + ("" if agreement is None else f" ({agreement:.1%})")
        + f"; false successes {judge.get('false_success', 0)}, false failures {judge.get('false_failure', 0)}, "
        f"handed to the operator {judge.get('asked_operator', 0)}",
        f"self-reset        {reset.get('succeeded', 0)}/{reset.get('attempts', 0)} succeeded; operator calls "
        f"{reset.get('operator_calls', 0)}; teleports {reset.get('teleports', 0)}",
        f"log               {log['finished']} finished trials; lost {len(log['lost'])}, "
        f"incomplete {len(log['incomplete'])}",
        f"success rate      {figures['success_rate']:.1%} (judged by {figures['judged_by']}); "
        f"failures {figures['failures']}",
    ]
    if memory:
        per_trial = "n/a" if memory["per_trial"] is None else f"{memory['per_trial']:+.2f} MB/trial"
        lines.append(
            f"memory            {memory['first']:.0f} -> {memory['last']:.0f} MB "
            f"(peak {memory['peak']:.0f}); {per_trial}"
        )
    return "\n".join(lines)
