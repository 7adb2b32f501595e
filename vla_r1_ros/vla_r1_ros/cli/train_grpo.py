"""`vla-r1 train-grpo --data OUT --model PATH --output DIR`: GRPO fine-tuning (TRL) on an exported dataset.

Defaults are the official VLA-R1 GRPO settings (group 5, lr 3e-5, KL 0.01, clip 0.2, 2048 tokens) with
LoRA, and nf4 QLoRA + bf16 on a GPU. `--cpu-smoke` runs two tiny steps on the CPU to check a setup:

    vla-r1 make-test-model /tmp/tiny
    vla-r1 train-grpo --data data/sim --model /tmp/tiny --output /tmp/grpo --cpu-smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

# Flags that map one-to-one onto GrpoSettings fields (None = keep the default, or the smoke value).
_SETTINGS_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("num_generations", int, "completions per prompt (GRPO group size; default 5)"),
    ("learning_rate", float, "default 3e-5"),
    ("beta", float, "KL coefficient (default 0.01)"),
    ("epsilon", float, "clip range (default 0.2)"),
    ("max_prompt_length", int, "longer prompts (image tokens included) are dropped (default 2048)"),
    ("max_completion_length", int, "default 2048"),
    ("temperature", float, "rollout sampling temperature (default 1.0)"),
    ("per_device_train_batch_size", int, "completions per device step (multiple of the group size; default 5)"),
    ("gradient_accumulation_steps", int, "default 8"),
    ("num_train_epochs", float, "default 1"),
    ("max_steps", int, "stop after this many optimizer steps (overrides epochs)"),
    ("lora_r", int, "LoRA rank (default 16)"),
    ("lora_alpha", int, "LoRA alpha (default 32)"),
    ("logging_steps", int, "log (and append to rewards.csv) every N steps (default 1)"),
    ("save_steps", int, "checkpoint every N steps (default 100)"),
    ("seed", int, "default 0"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="`vla-r1 export-dataset` output directory (or its hf/)")
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id (in the local cache)")
    parser.add_argument("--output", required=True, help="output directory: adapter/, rewards.csv, log_history.json")
    parser.add_argument("--cpu-smoke", action="store_true", help="2 tiny steps on the CPU (checks the setup)")
    parser.add_argument("--quantization", choices=("nf4", "int8", "none"), default=None, help="GPU only (default nf4)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default=None, help="default auto")
    parser.add_argument("--full", action="store_true", help="full fine-tune instead of LoRA")
    parser.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="recompute activations to save memory (default on; off with --cpu-smoke)",
    )
    for name, kind, help_text in _SETTINGS_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=help_text)


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.policies.vla_r1 import ModelUnavailableError
    from vla_r1_ros.training.grpo import GrpoSettings, train

    overrides = {name: getattr(args, name) for name, _kind, _help in _SETTINGS_FLAGS}
    overrides.update(
        quantization=args.quantization, device=args.device, gradient_checkpointing=args.gradient_checkpointing
    )
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.full:
        overrides["lora"] = False
    make = GrpoSettings.cpu_smoke if args.cpu_smoke else GrpoSettings
    settings = make(args.data, args.model, args.output, **overrides)
    try:
        result = train(settings)
    except (ModelUnavailableError, FileNotFoundError, ValueError) as exc:
        print(f"vla-r1 train-grpo: {exc}", file=sys.stderr)
        return 1
    last = next((entry for entry in reversed(result.log_history) if "reward" in entry), {})
    summary = {"settings": dataclasses.asdict(settings), "steps": result.steps, "adapter": str(result.adapter)}
    summary.update(last_reward=last.get("reward"), dropped_overlong_prompts=result.dropped_overlong)
    print(json.dumps(summary, indent=2))
    return 0
