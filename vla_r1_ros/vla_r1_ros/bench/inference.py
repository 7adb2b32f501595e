"""`vla-r1 bench inference`: VLA-R1's compute cost on this machine, without downloading the model.

The model is the real Qwen2.5-VL-3B architecture (the published config below) with random weights,
built with `_from_config` and saved once to a scratch directory, then loaded through `VlaR1Policy` —
the node's own path (processor from parts, smart resize, left-padded batch, bitsandbytes) — once per
precision. Random weights cost exactly what trained ones do; only the text is meaningless, so the
generation length is forced (min_new_tokens = max_new_tokens).

Per precision (bf16, nf4): load time; prefill (one task: vision encoder + prompt + first token);
decode tokens/s (one task); the two tasks as ONE batched call vs. one at a time (the official client's
way), and their ratio; peak RSS of the phase (Linux VmHWM, reset between precisions).
`--quick` does the same on the tiny test model in seconds (a smoke test, not a measurement).
Runs on the CPU (device="cpu"): the question it answers is whether and how slowly a machine without a
GPU runs VLA-R1. Figures measured here are in docs/inference.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

INSTRUCTION = "put the red cube in the tray"
IMAGE_SIZE = 448  # 448² -> 16 × 16 merged patches = 256 image tokens

# Qwen/Qwen2.5-VL-3B-Instruct config.json (the architecture GigaAI-Research/vla-r1 fine-tunes).
QWEN2_5_VL_3B_TEXT = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
    "sliding_window": 32768,
    "max_window_layers": 70,
    "hidden_act": "silu",
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "tie_word_embeddings": True,
}
QWEN2_5_VL_3B_VISION = {
    "depth": 32,
    "hidden_act": "silu",
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "out_hidden_size": 2048,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny random model: a seconds-long smoke test")
    parser.add_argument("--new-tokens", type=int, default=None, help="forced answer length (default 32; quick 8)")
    parser.add_argument("--precisions", default="bf16,nf4", help="comma-separated: bf16, nf4, int8 (default bf16,nf4)")
    parser.add_argument("--workdir", default=None, help="where the random checkpoint is written (default: temp)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results as JSON here")


def peak_rss_reset() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux >= 4.0)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_gb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def write_random_3b(directory: Path) -> Path:
    """The 3B architecture with random weights, plus the real Qwen tokenizer, in hub layout.

    A directory finished by an earlier run (`--workdir`) is reused: building and saving takes minutes.
    """
    done = directory / ".complete"
    if done.is_file():
        return directory
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from vla_r1_ros.testing import tiny_model

    tokenizer = tiny_model.make_tokenizer("qwen")
    config = Qwen2_5_VLConfig(
        text_config=QWEN2_5_VL_3B_TEXT,
        vision_config=QWEN2_5_VL_3B_VISION,
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory)
    del model
    gc.collect()
    tokenizer.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(tiny_model.QWEN2_5_VL_PREPROCESSOR))
    done.write_text("")
    return directory


def _timed_generate(policy: Any, tasks: list[str], image: np.ndarray, new_tokens: int) -> float:
    import torch

    inputs = policy.build_inputs(image, INSTRUCTION, tasks)
    kwargs = policy.generation_kwargs() | {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens}
    loaded = policy.components()
    started = time.perf_counter()
    with torch.inference_mode():
        loaded.model.generate(**inputs, **kwargs, pad_token_id=loaded.tokenizer.pad_token_id)
    return time.perf_counter() - started


def measure(checkpoint: Path, precision: str, new_tokens: int) -> dict[str, Any]:
    from vla_r1_ros.core.prompts import AFFORDANCE, TASKS
    from vla_r1_ros.policies.vla_r1 import VlaR1Policy

    gc.collect()
    peak_rss_reset()
    quantization = {"bf16": "none", "nf4": "nf4", "int8": "int8"}[precision]
    policy = VlaR1Policy(model=str(checkpoint), quantization=quantization, device="cpu", dtype="bfloat16")
    started = time.perf_counter()
    policy.load()
    load_s = time.perf_counter() - started
    image = np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    prompt_tokens = int(policy.build_inputs(image, INSTRUCTION, [AFFORDANCE])["input_ids"].shape[1])

    _timed_generate(policy, [AFFORDANCE], image, 1)  # warm-up: first-call allocations, kernel selection
    prefill_s = _timed_generate(policy, [AFFORDANCE], image, 1)
    single_s = _timed_generate(policy, [AFFORDANCE], image, new_tokens)
    batched_s = _timed_generate(policy, list(TASKS), image, new_tokens)
    one_at_a_time_s = sum(_timed_generate(policy, [task], image, new_tokens) for task in TASKS)
    result = {
        "precision": precision,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "load_s": load_s,
        "prefill_s": prefill_s,
        "decode_tok_s": (new_tokens - 1) / max(single_s - prefill_s, 1e-9),
        "two_tasks_batched_s": batched_s,
        "two_tasks_one_at_a_time_s": one_at_a_time_s,
        "batched_speedup": one_at_a_time_s / batched_s,
        "peak_rss_gb": peak_rss_gb(),
    }
    del policy
    gc.collect()
    return result


def format_table(results: list[dict[str, Any]]) -> str:
    columns = [
        ("precision", "{}"),
        ("prompt_tokens", "{}"),
        ("load_s", "{:.1f}"),
        ("prefill_s", "{:.2f}"),
        ("decode_tok_s", "{:.2f}"),
        ("two_tasks_batched_s", "{:.1f}"),
        ("two_tasks_one_at_a_time_s", "{:.1f}"),
        ("batched_speedup", "{:.2f}x"),
        ("peak_rss_gb", "{:.1f}"),
    ]
    rows = [[name for name, _ in columns]]
    for result in results:
        rows.append([fmt.format(result[name]) if result[name] is not None else "-" for name, fmt in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def run(args: argparse.Namespace) -> int:
    import platform

    import torch

    from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = set(precisions) - {"bf16", "nf4", "int8"}
    if unknown:
        print(f"unknown precision(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    new_tokens = args.new_tokens or (8 if args.quick else 32)
    with tempfile.TemporaryDirectory(prefix="vla-r1-bench-") as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if args.quick:
            checkpoint = build_tiny_vla_r1(workdir / "tiny", tokenizer="bpe")
            model = "tiny random Qwen2.5-VL (smoke test)"
        else:
            print("building the Qwen2.5-VL-3B architecture with random weights (a few minutes) ...", flush=True)
            checkpoint = write_random_3b(workdir / "qwen2.5-vl-3b-random")
            model = "Qwen2.5-VL-3B architecture, random weights"
        build_s = time.perf_counter() - started
        results = []
        for precision in precisions:
            print(f"measuring {precision} ...", flush=True)
            results.append(measure(checkpoint, precision, new_tokens))
    report = {
        "model": model,
        "image": f"{IMAGE_SIZE}x{IMAGE_SIZE}",
        "instruction": INSTRUCTION,
        "build_s": build_s,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }
    print(f"\n{model}; {IMAGE_SIZE}x{IMAGE_SIZE} image, {new_tokens} forced new tokens, {report['device']}")
    print(format_table(results))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0
