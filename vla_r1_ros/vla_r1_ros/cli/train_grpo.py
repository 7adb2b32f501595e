"""`vla-r1 train-grpo --data OUT --model PATH --output DIR`: GRPO fine-tuning (TRL) on an exported dataset.

Defaults are the official VLA-R1 GRPO settings (group 5, lr 3e-5, KL 0.01, clip 0.2, 2048 tokens) with
LoRA, and nf4 QLoRA + bf16 on a GPU. `--cpu-smoke` runs two tiny steps on the CPU to check a setup:

    vla-r1 make-test-model /tmp/tiny
    vla-r1 train-grpo --data data/sim --model /tmp/tiny --output /tmp/grpo --cpu-smoke

`--init-adapter DIR` goes on training an adapter (`vla-r1 train-sft`'s) instead of a new LoRA.
"""

from __future__ import annotations

import argparse

from vla_r1_ros.cli import training_flags

# Flags of GRPO's own settings (the shared ones: cli/training_flags.py).
_FLAGS: tuple[training_flags.Flag, ...] = (
    ("num_generations", int, "completions per prompt (GRPO group size; default 5)"),
    ("beta", float, "KL coefficient (default 0.01)"),
    ("epsilon", float, "clip range (default 0.2)"),
    ("max_prompt_length", int, "longer prompts (image tokens included) are dropped (default 2048)"),
    ("max_completion_length", int, "default 2048"),
    ("temperature", float, "rollout sampling temperature (default 1.0)"),
    ("top_p", float, "rollout nucleus sampling (default 1.0)"),
    ("per_device_train_batch_size", int, "completions per device step (multiple of the group size; default 5)"),
    ("vllm_mode", str, "rollouts: none (model.generate) | server (a `vllm serve`) | colocate (GPU; docs/episodes.md)"),
    ("vllm_server_base_url", str, "--vllm-mode server: the server (default http://127.0.0.1:8000)"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    training_flags.configure(parser, _FLAGS)


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.training.grpo import GrpoSettings, train

    def summarize(result) -> dict:
        last = next((entry for entry in reversed(result.log_history) if "reward" in entry), {})
        return {"last_reward": last.get("reward"), "dropped_overlong_prompts": result.dropped_overlong}

    return training_flags.run(args, "train-grpo", GrpoSettings, _FLAGS, train, summarize)
