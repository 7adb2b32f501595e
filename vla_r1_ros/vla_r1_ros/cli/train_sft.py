"""`vla-r1 train-sft --data OUT --model PATH --output DIR`: chain-of-thought SFT (TRL) on an exported
dataset, the first stage; `train-grpo --init-adapter DIR/adapter` goes on from its adapter.

Targets are the logged reasoning + the reference answer (`<think>…</think> … <output>…</output>`),
the official prompt is the user turn, with the image. LoRA, nf4 QLoRA + bf16 on a GPU. `--cpu-smoke`
runs two tiny steps on the CPU:

    vla-r1 make-test-model /tmp/tiny
    vla-r1 train-sft --data data/sim --model /tmp/tiny --output /tmp/sft --cpu-smoke
    vla-r1 train-grpo --data data/sim --model /tmp/tiny --output /tmp/grpo --cpu-smoke --init-adapter /tmp/sft/adapter
"""

from __future__ import annotations

import argparse

from vla_r1_ros.cli import training_flags

_FLAGS: tuple[training_flags.Flag, ...] = (("per_device_train_batch_size", int, "records per device step (default 2)"),)


def configure(parser: argparse.ArgumentParser) -> None:
    training_flags.configure(parser, _FLAGS)


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.training.sft import SftSettings, train

    def summarize(result) -> dict:
        last = next((entry for entry in reversed(result.log_history) if "loss" in entry), {})
        return {"records": result.records, "dropped_unusable": result.dropped_unusable, "last_loss": last.get("loss")}

    return training_flags.run(args, "train-sft", SftSettings, _FLAGS, train, summarize)
