"""`vla-r1 bench inference`: VLA-R1's decision latency on this machine, the official way and this package's.

The model is the real Qwen2.5-VL-3B architecture (the published config below) with random weights,
built with `_from_config` and saved once to a scratch directory (`--workdir` keeps it), then loaded
through `VlaR1Policy` — the node's own path. Random weights cost exactly what trained ones do; only
the text is meaningless, so every row forces the same answer length (min = max new tokens, end
tokens ignored). The frame is the camera's 640×480 (391 image tokens after Qwen's smart resize).

One decision = both tasks (affordance + trajectory) about one frame. Rows, each measured alone:
- `official`: one request per task, bf16, plain HF `generate` with the official sampling — what the
  official server (GigaAI-research/VLA-R1 scripts/server.py) does;
- `batched`: both tasks as one batch of two rows, nothing else;
- each lever on top of `batched` alone: `vision_once`, `greedy`, `static_cache` (and `compile` when
  asked for: it compiles for minutes per prompt length);
- `default`: this package's defaults (config/model.yaml) at the precision `quantization: auto`
  picks for the CPU.
Per row: prefill (forced 1 token: vision + prompt + first token), decode steps/s, total seconds.
Every precision runs in a fresh process, so its peak RSS (Linux VmHWM) is its own: while loading and
over all its rows. Rows run in `--rounds` rounds (default 2), each keeps its fastest round.
`speedup_vs_official` = official seconds / default seconds, same run.
`--quick` does the same on the tiny test model in seconds (a smoke test, not a measurement).
Runs on the CPU (device="cpu"). Figures measured here are in docs/inference.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

INSTRUCTION = "put the red cube in the tray"
FRAME_HEIGHT, FRAME_WIDTH = 480, 640  # the camera's frame (config/camera.yaml's colour stream)
PRECISIONS = {"bf16": "none", "nf4": "nf4", "int8": "int8", "int4": "int4_decode"}

# Row name -> (what it is, both tasks in one batch?, settings changed from config/model.yaml).
# Every row but `default` starts from the plain path: no vision sharing, no stop at </output>
# (forced lengths never stop anyway), the official sampling.
PLAIN = {"vision_once": False, "stop_at_output": False, "greedy": False, "static_cache": False, "compile": False}
ROWS: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "official": ("one request per task, plain generate (official server)", False, PLAIN),
    "batched": ("both tasks in one batch", True, PLAIN),
    "vision_once": ("batched + vision tower once for both rows", True, PLAIN | {"vision_once": True}),
    "greedy": ("batched + greedy decoding", True, PLAIN | {"greedy": True}),
    "static_cache": ("batched + static KV cache", True, PLAIN | {"static_cache": True}),
    "compile": ("batched + static cache + torch.compile", True, PLAIN | {"static_cache": True, "compile": True}),
    "default": ("this package's defaults (config/model.yaml)", True, {}),
}
DEFAULT_LEVERS = "vision_once,greedy,static_cache"

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
    parser.add_argument("--new-tokens", type=int, default=128, help="forced answer length per task (default 128)")
    parser.add_argument(
        "--precisions",
        default="bf16,nf4,int8,int4",
        help="comma-separated: bf16, nf4, int8, int4 (int4_decode; default all)",
    )
    parser.add_argument(
        "--levers",
        default=DEFAULT_LEVERS,
        help=f"levers measured alone on the bf16 model (default {DEFAULT_LEVERS}; also: compile)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all rows; each row keeps its fastest")
    parser.add_argument("--workdir", default=None, help="where the random checkpoint is written (default: temp)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results as JSON here")
    # Internal: one precision in this process (the parent starts one per precision).
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows", default="", help=argparse.SUPPRESS)
    # The tiny model's widths (64) take no 128-channel groups: --quick packs int4 in groups of 32.
    parser.add_argument("--int4-group-size", type=int, default=None, help=argparse.SUPPRESS)


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
    # Shards of at most 4 GB, like the published checkpoint (two safetensors files).
    model.save_pretrained(directory, max_shard_size="4GB")
    del model
    gc.collect()
    tokenizer.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(tiny_model.QWEN2_5_VL_PREPROCESSOR))
    done.write_text("")
    return directory


def _timed(policy: Any, tasks: list[str], image: np.ndarray, tokens: int) -> float:
    from vla_r1_ros.policies.vla_r1 import chats_for

    started = time.perf_counter()
    policy.generate(image, chats_for(INSTRUCTION, tasks), tasks, forced_tokens=tokens)
    return time.perf_counter() - started


def measure_row(policy: Any, name: str, image: np.ndarray, new_tokens: int) -> dict[str, Any]:
    """One row: prefill and total per request (one request of two rows, or one per task)."""
    from vla_r1_ros.core.prompts import TASKS

    what, batched, changes = ROWS[name]
    variant = policy.variant(**changes)
    requests = [list(TASKS)] if batched else [[task] for task in TASKS]
    prefill_s = total_s = 0.0
    for tasks in requests:
        prefill_s += _timed(variant, tasks, image, 1)
        total_s += _timed(variant, tasks, image, new_tokens)
    decode_steps = len(requests) * (new_tokens - 1)
    return {
        "row": name,
        "what": what,
        "requests": len(requests),
        "prefill_s": prefill_s,
        # None when timer noise exceeds the decode time (the tiny model's smoke test)
        "decode_steps_per_s": decode_steps / (total_s - prefill_s) if total_s > prefill_s else None,
        "total_s": total_s,
    }


def rss_gb(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status in GB of 10^9 bytes (VmHWM: peak, VmRSS: now)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e9  # the file counts kB of 1024 bytes
    except OSError:
        pass
    return None


def run_worker(
    precision: str, checkpoint: Path, rows: list[str], new_tokens: int, rounds: int, int4_group_size: int | None = None
) -> dict[str, Any]:
    """Load the checkpoint at `precision` and measure `rows`, in this (fresh) process.

    The rows are measured in `rounds` rounds, all rows once per round, and each row keeps its fastest
    round: the machine is shared, and a burst of other work during one row must not decide a ratio."""
    from vla_r1_ros.core.config import load_config
    from vla_r1_ros.policies.settings import TransformersSettings
    from vla_r1_ros.policies.vla_r1 import VlaR1Policy

    settings = TransformersSettings.from_config(
        load_config("model"),
        model=str(checkpoint),
        quantization=PRECISIONS[precision],
        device="cpu",
        **({"int4_group_size": int4_group_size} if int4_group_size else {}),
    )
    policy = VlaR1Policy(settings)
    started = time.perf_counter()
    policy.load()
    load_s = time.perf_counter() - started
    load_peak, loaded_rss = rss_gb("VmHWM"), rss_gb("VmRSS")
    image = np.random.default_rng(0).integers(0, 256, (FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.uint8)
    _timed(policy, ["affordance"], image, 1)  # warm-up: first-call allocations, kernel selection
    best: dict[str, dict[str, Any]] = {}
    for round_number in range(rounds):
        for name in rows:
            print(f"  {precision} round {round_number + 1}/{rounds}: {name} ...", file=sys.stderr, flush=True)
            row = measure_row(policy, name, image, new_tokens)
            if name not in best or row["total_s"] < best[name]["total_s"]:
                best[name] = row
            gc.collect()
    return {
        "precision": precision,
        "load_s": load_s,
        "peak_rss_load_gb": load_peak,
        "rss_after_load_gb": loaded_rss,
        "peak_rss_gb": rss_gb("VmHWM"),
        "rounds": rounds,
        "rows": [best[name] for name in rows],
    }


def _spawn_worker(
    precision: str, checkpoint: Path, rows: list[str], new_tokens: int, rounds: int, out: Path, quick: bool
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "vla_r1_ros.bench.inference",
        "--worker",
        precision,
        "--checkpoint",
        str(checkpoint),
        "--rows",
        ",".join(rows),
        "--new-tokens",
        str(new_tokens),
        "--rounds",
        str(rounds),
        "--json",
        str(out),
        *(["--int4-group-size", "32"] if quick else []),
    ]
    subprocess.run(command, check=True, env=os.environ.copy())
    return json.loads(out.read_text())


def default_cpu_precision() -> str:
    from vla_r1_ros.policies.settings import AUTO_QUANTIZATION

    return {quantization: name for name, quantization in PRECISIONS.items()}[AUTO_QUANTIZATION["cpu"]]


def summarize(workers: list[dict[str, Any]], new_tokens: int) -> dict[str, Any]:
    """The report: every row, `speedup_vs_official`, each lever's saving, peak RSS per precision."""
    by_precision = {worker["precision"]: worker for worker in workers}
    rows = {(w["precision"], row["row"]): row for w in workers for row in w["rows"]}
    default_precision = default_cpu_precision()
    official = rows.get(("bf16", "official"))
    default = rows.get((default_precision, "default"))
    batched = rows.get(("bf16", "batched"))
    report: dict[str, Any] = {
        "new_tokens": new_tokens,
        "frame": f"{FRAME_WIDTH}x{FRAME_HEIGHT}",
        "default_precision_cpu": default_precision,
        "speedup_vs_official": official["total_s"] / default["total_s"] if official and default else None,
        "peak_rss_gb": {name: worker["peak_rss_gb"] for name, worker in by_precision.items()},
        "peak_rss_load_gb": {name: worker["peak_rss_load_gb"] for name, worker in by_precision.items()},
        "rss_after_load_gb": {name: worker["rss_after_load_gb"] for name, worker in by_precision.items()},
        "load_s": {name: worker["load_s"] for name, worker in by_precision.items()},
        "rows": [dict(row, precision=precision) for (precision, _name), row in rows.items()],
    }
    if official and batched:
        # Each lever's share: seconds it saves from the batched path, alone.
        report["lever_saving_s"] = {"batched": official["total_s"] - batched["total_s"]} | {
            name: batched["total_s"] - row["total_s"]
            for (precision, name), row in rows.items()
            if precision == "bf16" and name not in ("official", "batched", "default")
        }
    return report


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(report: dict[str, Any]) -> str:
    official = next((r for r in report["rows"] if r["row"] == "official"), None)
    lines = [
        f"{'precision':>9}  {'row':>12}  {'prefill s':>9}  {'decode steps/s':>14}  {'total s':>8}  {'vs official':>11}"
    ]
    for row in report["rows"]:
        ratio = f"{official['total_s'] / row['total_s']:.2f}x" if official else "-"
        lines.append(
            f"{row['precision']:>9}  {row['row']:>12}  {row['prefill_s']:>9.2f}  "
            f"{_number(row['decode_steps_per_s']):>14}  {row['total_s']:>8.1f}  {ratio:>11}"
        )
    for name, peak in report["peak_rss_gb"].items():
        lines.append(
            f"{name}: load {report['load_s'][name]:.1f} s, peak RSS {peak:.2f} GB "
            f"(peak while loading {report['peak_rss_load_gb'][name]:.2f} GB, "
            f"resident after loading {report['rss_after_load_gb'][name]:.2f} GB)"
        )
    if report["speedup_vs_official"] is not None:
        default = report["default_precision_cpu"]
        lines.append(f"speedup_vs_official (default path, {default}): {report['speedup_vs_official']:.2f}x")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.worker:
        result = run_worker(
            args.worker, Path(args.checkpoint), args.rows.split(","), args.new_tokens, args.rounds, args.int4_group_size
        )
        Path(args.json_out).write_text(json.dumps(result) + "\n")
        return 0
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    levers = [lever.strip() for lever in args.levers.split(",") if lever.strip()]
    unknown = (set(precisions) - set(PRECISIONS)) | (set(levers) - (set(ROWS) - {"official", "batched", "default"}))
    if unknown:
        print(f"unknown precision(s) or lever(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.new_tokens < 2:
        print("--new-tokens must be at least 2 (prefill is measured with 1)", file=sys.stderr)
        return 2
    import platform

    from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

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
        workers = []
        for precision in precisions:
            rows = ["official", "batched", *levers, "default"] if precision == "bf16" else ["default"]
            print(f"measuring {precision}: {', '.join(rows)} ...", flush=True)
            # Kept next to the checkpoint: a precision failing later does not lose those measured before.
            workers.append(
                _spawn_worker(
                    precision, checkpoint, rows, args.new_tokens, args.rounds, workdir / f"{precision}.json", args.quick
                )
            )
    report = {
        "model": model,
        "instruction": INSTRUCTION,
        "build_s": build_s,
        "device": "cpu",
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    } | summarize(workers, args.new_tokens)
    print(f"\n{model}; {report['frame']} frame, {args.new_tokens} forced new tokens per task, cpu")
    print(format_table(report))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":  # the per-precision worker process
    parser = argparse.ArgumentParser()
    configure(parser)
    sys.exit(run(parser.parse_args()))
