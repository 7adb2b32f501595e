"""The command-line flags `train-sft` and `train-grpo` share, and their common run: flags -> settings
-> train -> a JSON summary. Flags mapping one-to-one onto settings fields are declared by each command
as (name, type, help); None keeps the default (or the `--cpu-smoke` value)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

Flag = tuple[str, type, str]

SHARED_FLAGS: tuple[Flag, ...] = (
    ("learning_rate", float, "optimizer learning rate"),
    ("gradient_accumulation_steps", int, "batches per optimizer step"),
    ("num_train_epochs", float, "passes over the data"),
    ("max_steps", int, "stop after this many optimizer steps (overrides epochs)"),
    ("lora_r", int, "LoRA rank (default 16)"),
    ("lora_alpha", int, "LoRA alpha (default 32)"),
    ("logging_steps", int, "log every N steps (default 1)"),
    ("save_steps", int, "checkpoint every N steps (default 100)"),
    ("seed", int, "default 0"),
)


def configure(parser: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    parser.add_argument("--data", required=True, help="`vla-r1 export-dataset` output directory (or its hf/)")
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id (in the local cache)")
    parser.add_argument("--output", required=True, help="output directory: adapter/, log_history.json, settings")
    parser.add_argument("--cpu-smoke", action="store_true", help="2 tiny steps on the CPU (checks the setup)")
    parser.add_argument("--quantization", choices=("nf4", "int8", "none"), default=None, help="GPU only (default nf4)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default=None, help="default auto")
    parser.add_argument("--full", action="store_true", help="full fine-tune instead of LoRA")
    parser.add_argument("--init-adapter", default=None, help="go on training this LoRA adapter (made for --model)")
    parser.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="recompute activations to save memory (default on; off with --cpu-smoke)",
    )
    parser.add_argument(
        "--prompt-layout",
        choices=("rl", "inference"),
        default=None,
        help="the user turn trained on: rl = the export's (official RL stage; default), inference = what the "
        "inference node sends (train this way for an adapter the node will serve)",
    )
    for name, kind, help_text in (*flags, *SHARED_FLAGS):
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=help_text)


def run(
    args: argparse.Namespace,
    command: str,
    settings_class: Any,
    flags: Sequence[Flag],
    train: Callable[[Any], Any],
    summarize: Callable[[Any], dict[str, Any]],
) -> int:
    """Exit 0 with a JSON summary; 2 with one line for refused input (nothing trained); 1 for a model
    that cannot load."""
    from vla_r1_ros.policies.vla_r1 import ModelUnavailableError
    from vla_r1_ros.training.loading import TrainingInputError

    overrides = {name: getattr(args, name) for name, _kind, _help in (*flags, *SHARED_FLAGS)}
    overrides.update(
        quantization=args.quantization,
        device=args.device,
        gradient_checkpointing=args.gradient_checkpointing,
        init_adapter=args.init_adapter,
        prompt_layout=args.prompt_layout,
    )
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.full:
        overrides["lora"] = False
    make = settings_class.cpu_smoke if args.cpu_smoke else settings_class
    settings = make(args.data, args.model, args.output, **overrides)
    try:
        result = train(settings)
    except TrainingInputError as exc:
        print(f"vla-r1 {command}: {exc}", file=sys.stderr)
        return 2
    except (ModelUnavailableError, FileNotFoundError, ValueError) as exc:
        print(f"vla-r1 {command}: {exc}", file=sys.stderr)
        return 1
    summary = {"settings": dataclasses.asdict(settings), "steps": result.steps, "adapter": str(result.adapter)}
    print(json.dumps(summary | summarize(result), indent=2))
    return 0
