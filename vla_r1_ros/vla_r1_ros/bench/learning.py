"""`vla-r1 bench learning`: does the learning loop learn? Held-out rewards of a tiny offline Qwen2.5-VL
before training, after `train-sft`, and after `train-grpo` started from the SFT adapter.

Data: simulator layouts (`training.sim_episodes`: real frames and ground truth, no ROS graph) answered by
the scripted expert at an error model, split BY LAYOUT into train and held-out seeds; the train log is
exported (`core.dataset`) and both stages train on it with the commands' own `train` functions. Each
model answers every held-out query through `VlaR1Policy` (the inference node's loader; the adapter
merged as `adapter:=` does) with greedy decoding, and its answers are written as episodes into one
held-out log per training seed, where the episode store scores them with the logger's rewards
(`core.rewards.score_completion` against the simulator's references) and each episode names the
checkpoint and adapter that answered — the log `vla-r1 report` compares by checkpoint.

Output (`--out`, default runs/bench-learning): `learning.json` with the held-out format, region,
trajectory and total rewards of base, sft and grpo (mean over the seeds), the seeds, the spread over
them, per seed the curves; `learning.png`: reward per step of both stages (SFT: held-out total reward of
each saved checkpoint; GRPO: the training rollouts' reward per step, TRL's, with the held-out total at
its start and end). Settings: config/learning_bench.yaml (`--quick`: the smoke test's run).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("base", "sft", "grpo")
REWARD_KEYS = ("format", "region", "trajectory", "total")
RESULT_FILE, FIGURE_FILE = "learning.json", "learning.png"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="the smoke test's run: checks the pipeline, not learning")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: config/learning_bench.yaml)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-learning"), help="logs, runs, JSON and PNG")


def held_out_rewards(log: Path, model_id: str) -> dict[str, float]:
    """The mean rewards of the episodes `model_id` answered in the held-out log (the logger's rewards)."""
    from vla_r1_ros.core.labels import outcomes_by_checkpoint
    from vla_r1_ros.core.prediction import checkpoint_and_adapter
    from vla_r1_ros.core.trials import mean_rewards

    means = mean_rewards(outcomes_by_checkpoint([log])[checkpoint_and_adapter(model_id)])
    return {key: float(means[key]) for key in REWARD_KEYS}


def evaluate(
    model: Path, adapter: str, run: str, queries: list, log: Path, evaluation: dict[str, Any]
) -> dict[str, float]:
    """Every held-out query answered by `model` (+ `adapter`) through the inference loader, greedy,
    written into the held-out log as the trials of `run`; its mean rewards there."""
    from vla_r1_ros.core import prompts
    from vla_r1_ros.core.config import load_config
    from vla_r1_ros.policies.settings import TransformersSettings
    from vla_r1_ros.policies.vla_r1 import VlaR1Policy
    from vla_r1_ros.training.sim_episodes import write_episodes

    settings = TransformersSettings.from_config(
        load_config("model"),
        model=str(model),
        adapter=adapter,
        quantization="none",
        device="cpu",
        dtype="float32",
        greedy=True,
        **evaluation,
    )
    policy = VlaR1Policy(settings)
    policy.load()

    def answer(query) -> list[str]:
        return policy.predict(query.frame.color, query.instruction, prompts.TASKS)

    write_episodes(log, queries, answer, policy.model_id, run)
    return held_out_rewards(log, policy.model_id)


def constant_answer(train_log: Path, held_out_log: Path) -> dict[str, float]:
    """The held-out rewards of one fixed answer that never looks at image or instruction: the mean of the
    training references (box; waypoints of the most common length), in the official format (format 1).
    A model whose task scores do not beat it has learnt where objects usually are, not where this one is."""
    from vla_r1_ros.core import rewards
    from vla_r1_ros.core.episodes import iter_episodes

    def references(log: Path) -> list[dict[str, Any]]:
        return [document["references"] for _entry, document in iter_episodes(log) if document.get("references")]

    train = references(train_log)
    box = np.mean([ref["box"] for ref in train if ref.get("box")], axis=0)
    paths = [ref["waypoints"] for ref in train if ref.get("waypoints")]
    length = max({len(path) for path in paths}, key=[len(path) for path in paths].count)
    path = np.mean([p for p in paths if len(p) == length], axis=0)
    # One episode per (run, query) in the held-out log: the references of one run's episodes.
    held = {}
    for _entry, document in iter_episodes(held_out_log):
        held.setdefault(document["trial_id"].split("-", 1)[1], document["references"])
    region = float(np.mean([rewards.region_reward(box, ref["box"]) for ref in held.values()]))
    trajectory = float(np.mean([rewards.trajectory_reward(path, ref["waypoints"]) for ref in held.values()]))
    total = rewards.TASK_WEIGHT * (region + trajectory) / 2 + rewards.FORMAT_WEIGHT * 1.0
    return {"format": 1.0, "region": region, "trajectory": trajectory, "total": total}


def sft_checkpoints(output: Path) -> list[tuple[int, Path]]:
    """(step, adapter directory) of the checkpoints TRL saved during a run, by step."""
    found = [(int(path.name.split("-")[1]), path) for path in output.glob("checkpoint-*") if path.is_dir()]
    return sorted(found)


def grpo_curve(output: Path) -> list[dict[str, float]]:
    """TRL's reward per step of the GRPO rollouts (rewards.csv), total and per reward function."""
    from vla_r1_ros.training.grpo import REWARD_CSV

    with (output / REWARD_CSV).open(encoding="utf-8") as handle:
        return [
            {
                "step": int(row["step"]),
                "reward": float(row["reward"]),
                "format": float(row["rewards/format_reward/mean"]),
                "task": float(row["rewards/task_reward/mean"]),
            }
            for row in csv.DictReader(handle)
        ]


def run_seed(seed: int, bench: dict[str, Any], model: Path, data: Path, queries: list, out: Path) -> dict[str, Any]:
    """SFT then GRPO from its adapter at training seed `seed`; the held-out rewards of base, every SFT
    checkpoint, SFT and GRPO, and both curves."""
    from vla_r1_ros.training import grpo, sft

    folder = out / f"seed{seed}"
    log = folder / "held_out_log"
    evaluation = bench["evaluation"]
    held_out = {"base": evaluate(model, "", "base", queries, log, evaluation)}
    sft_settings = sft.SftSettings.cpu_smoke(str(data), str(model), str(folder / "sft"), seed=seed, **bench["sft"])
    started = time.monotonic()
    sft_result = sft.train(sft_settings)
    sft_seconds = time.monotonic() - started
    sft_steps = [{"step": 0, "total": held_out["base"]["total"]}]
    for step, checkpoint in sft_checkpoints(folder / "sft"):
        if step < sft_result.steps:
            sft_steps.append(
                {
                    "step": step,
                    "total": evaluate(model, str(checkpoint), f"sft-step{step}", queries, log, evaluation)["total"],
                }
            )
    held_out["sft"] = evaluate(model, str(sft_result.adapter), "sft", queries, log, evaluation)
    sft_steps.append({"step": sft_result.steps, "total": held_out["sft"]["total"]})
    grpo_settings = grpo.GrpoSettings.cpu_smoke(
        str(data), str(model), str(folder / "grpo"), seed=seed, init_adapter=str(sft_result.adapter), **bench["grpo"]
    )
    started = time.monotonic()
    grpo_result = grpo.train(grpo_settings)
    grpo_seconds = time.monotonic() - started
    held_out["grpo"] = evaluate(model, str(grpo_result.adapter), "grpo", queries, log, evaluation)
    losses = [{"step": e["step"], "loss": e["loss"]} for e in sft_result.log_history if "loss" in e]
    return {
        "seed": seed,
        "held_out": held_out,
        "held_out_log": str(log),
        "sft": {"steps": sft_result.steps, "train_seconds": sft_seconds, "held_out_total": sft_steps, "loss": losses},
        "grpo": {
            "steps": grpo_result.steps,
            "train_seconds": grpo_seconds,
            "train_reward": grpo_curve(folder / "grpo"),
        },
    }


def spread(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per stage and reward: min, max and standard deviation over the seeds."""
    return {
        stage: {
            key: {
                "min": float(np.min(values)),
                "max": float(np.max(values)),
                "std": float(np.std(values)),
            }
            for key in REWARD_KEYS
            for values in [[run["held_out"][stage][key] for run in per_seed]]
        }
        for stage in STAGES
    }


def summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The bench's claim, checked: held-out total base < SFT < GRPO and format ≥ 0.9 after SFT (means)."""
    held_out = {
        stage: {key: float(np.mean([run["held_out"][stage][key] for run in per_seed])) for key in REWARD_KEYS}
        for stage in STAGES
    }
    totals = [held_out[stage]["total"] for stage in STAGES]
    checks = {
        "base_below_sft": totals[0] < totals[1],
        "sft_below_grpo": totals[1] < totals[2],
        "sft_format_at_least_0.9": held_out["sft"]["format"] >= 0.9,
    }
    return {"held_out": held_out, "checks": checks}


def figure(per_seed: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in per_seed:
        points = run["sft"]["held_out_total"]
        left.plot([p["step"] for p in points], [p["total"] for p in points], "o-", label=f"seed {run['seed']}")
        curve = run["grpo"]["train_reward"]
        (line,) = right.plot(
            [p["step"] for p in curve], [p["reward"] for p in curve], label=f"seed {run['seed']} rollouts"
        )
        steps = run["grpo"]["steps"]
        held = [run["held_out"]["sft"]["total"], run["held_out"]["grpo"]["total"]]
        right.plot([0, steps], held, "s--", color=line.get_color(), label=f"seed {run['seed']} held-out")
    left.set(title="SFT: held-out total reward per checkpoint", xlabel="SFT step", ylabel="total reward")
    right.set(title="GRPO from the SFT adapter", xlabel="GRPO step", ylabel="total reward")
    for axes in (left, right):
        axes.set_ylim(0, 1)
        axes.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core import dataset
    from vla_r1_ros.core.config import PackageConfig, load_config
    from vla_r1_ros.testing.tiny_model import TinyModelSize, build_tiny_vla_r1
    from vla_r1_ros.training.sim_episodes import layout_queries, write_expert_episodes

    started = time.monotonic()
    bench = load_config("learning_bench")["quick" if args.quick else "default"]
    seeds = args.seeds or bench["seeds"]
    layouts = bench["layouts"]
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        print(f"vla-r1 bench learning: {out} is not empty (each run writes its own logs there)", file=sys.stderr)
        return 2
    config = PackageConfig.load()
    train_seeds, held_out_seeds = range(*layouts["train"]), range(*layouts["held_out"])
    if set(train_seeds) & set(held_out_seeds):
        print("vla-r1 bench learning: train and held-out layouts overlap", file=sys.stderr)
        return 2
    targets = layouts["targets_per_layout"]
    # The model first: importing torch's stack (triton) after the simulator and pyarrow crashed the
    # process here (SIGSEGV in triton's extension module).
    import torch

    torch.set_num_threads(bench["threads"])
    size = {key: value for key, value in bench["model"].items() if key != "tokenizer"}
    tokenizer = bench["model"].get("tokenizer", "bpe")
    model = build_tiny_vla_r1(out / "model", tokenizer=tokenizer, size=TinyModelSize(**size))
    queries = layout_queries(config, [*train_seeds, *held_out_seeds], targets)
    train = [query for query in queries if query.layout_seed in train_seeds]
    queries = [query for query in queries if query.layout_seed in held_out_seeds]
    write_expert_episodes(out / "train_log", config, train, layouts["noise"])
    exported = dataset.export_dataset(out / "train_log", out / "train_data")
    per_seed = [run_seed(seed, bench, model, out / "train_data", queries, out) for seed in seeds]
    baseline = constant_answer(out / "train_log", Path(per_seed[0]["held_out_log"]))
    command = ["vla-r1", "bench", "learning", *(["--quick"] if args.quick else []), "--seeds", *map(str, seeds)]
    figure(per_seed, out / FIGURE_FILE)
    result = {
        "command": shlex.join([*command, "--out", str(args.out)]),
        "wall_seconds": time.monotonic() - started,
        **summary(per_seed),
        # Not a model: the mean training reference given as every answer (what no image reading scores).
        "constant_answer": baseline,
        "seeds": list(seeds),
        "spread": spread(per_seed),
        "layouts": {"train": list(train_seeds), "held_out": list(held_out_seeds), "targets_per_layout": targets},
        "records": {"train": exported.records, "held_out_queries": len(queries)},
        "model": bench["model"],
        "threads": bench["threads"],
        "per_seed": per_seed,
        "figure": str(out / FIGURE_FILE),
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    shown = ("held_out", "constant_answer", "checks", "seeds", "spread", "wall_seconds")
    print(json.dumps({key: result[key] for key in shown}, indent=2))
    print(out / RESULT_FILE)
    return 0
