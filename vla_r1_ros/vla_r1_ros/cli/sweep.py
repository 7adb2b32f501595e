"""`vla-r1 sweep`: success versus policy error — trials over a grid of error levels of the scripted
expert's error model (core/error_model.py), one key varied, the rest from `--base`.

Each level is a `vla-r1 trials` run of its own (the graph is started with that level's error model) in
`OUT/<key>=<level>/`, on the same layout seeds, so levels differ only in the policy's errors. Writes
`OUT/sweep.json` (per level: judged trials, successes, rate, 95 % Wilson band, failures by stage),
`OUT/sweep.png` (the curve with its band, VLA-R1-3B's operating point marked) and `OUT/report.html`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from vla_r1_ros.cli import trials
from vla_r1_ros.core.error_model import KEYS, PAPER_MEAN_IOU, PAPER_MEAN_RMSE_1000, ErrorModelError, parse_error_model
from vla_r1_ros.core.trials import TrialSettings

# Default grids, ordered from exact to worse.
DEFAULT_LEVELS: dict[str, tuple[float, ...]] = {
    "iou": (1.0, 0.8, 0.6, PAPER_MEAN_IOU, 0.2, 0.1),
    "rmse": (0.0, 40.0, PAPER_MEAN_RMSE_1000, 150.0, 300.0),
    "wrong_object": (0.0, 0.25, 0.5, 0.75, 1.0),
    "parse_fail": (0.0, 0.25, 0.5, 0.75, 1.0),
}


def _levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels must be comma-separated numbers, not {text!r}") from None
    if not levels:
        raise argparse.ArgumentTypeError("--levels needs at least one number")
    return levels


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vary", choices=KEYS, default="rmse", help="error-model key to sweep (default rmse)")
    parser.add_argument(
        "--levels",
        type=_levels,
        help="comma-separated levels of --vary (default: "
        + "; ".join(f"{k} {','.join(f'{v:g}' for v in levels)}" for k, levels in DEFAULT_LEVELS.items())
        + ")",
    )
    parser.add_argument(
        "--base", type=trials.noise_spec, default="none", help="error model of the other keys (preset or pairs)"
    )
    parser.add_argument("--trials", type=int, default=10, help="trials per level (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="first layout seed, the same at every level")
    parser.add_argument("--objects", type=int, default=0, help="objects per layout (0 = config default)")
    parser.add_argument(
        "--timeout", type=float, default=TrialSettings.trial_timeout_s, help="seconds allowed per trial"
    )
    parser.add_argument("--out", help="output folder (default runs/sweep-<time>)")


def level_arguments(args: argparse.Namespace, level: float, out: Path) -> argparse.Namespace:
    """The `vla-r1 trials` arguments of one level (parsed by its own parser: same checks, same defaults)."""
    noise = replace(parse_error_model(args.base), **{args.vary: level})  # range-checked here
    parser = argparse.ArgumentParser(prog="vla-r1 sweep")
    trials.configure(parser)
    argv = ["--n", str(args.trials), "--seed", str(args.seed), "--noise", noise.spec, "--out", str(out)]
    return parser.parse_args([*argv, "--objects", str(args.objects), "--timeout", str(args.timeout)])


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.episodes import write_json_atomic
    from vla_r1_ros.core.trials import sweep_curve
    from vla_r1_ros.report import write_sweep_report

    levels = args.levels or DEFAULT_LEVELS[args.vary]
    if args.trials < 1:
        print("vla-r1 sweep: --trials must be ≥ 1", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    try:
        runs = [(level, level_arguments(args, level, out / f"{args.vary}={level:g}")) for level in levels]
    except ErrorModelError as exc:
        print(f"vla-r1 sweep: {exc}", file=sys.stderr)
        return 2
    points = []
    for level, level_args in runs:
        print(f"--- {args.vary} = {level:g} ({level_args.noise}) -> {level_args.out}")
        code = trials.run_trials(level_args)
        if code:
            return code
        points.append((level, json.loads((Path(level_args.out) / "summary.json").read_text())))
    curve = sweep_curve(args.vary, args.base, points)
    write_json_atomic(out / "sweep.json", curve)
    print(f"sweep: {out / 'sweep.json'}\nreport: {write_sweep_report(out)}")
    for point in curve["points"]:
        low, high = point["wilson_95"]
        print(
            f"{args.vary}={point['level']:<8g} {point['successes']:>3}/{point['n']:<3} {point['success_rate']:6.1%}"
            f"  (95% Wilson {low:.1%} – {high:.1%})"
        )
    return 0
