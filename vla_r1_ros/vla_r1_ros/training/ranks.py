"""What each process of an `accelerate launch` run trained on: the rows (`episode/task`) it saw — GRPO's
scored completions, SFT's training examples — and its steps, gathered after training into `ranks.json`
by the main process, so a multi-process run shows that every rank took part and on which shard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vla_r1_ros.core.episodes import write_json_atomic

RANKS_FILE = "ranks.json"  # world size and, per process, its steps and how often it saw each row


def row_names(episodes: Sequence[str], tasks: Sequence[str]) -> list[str]:
    """The rows (`episode/task`) of an export's columns, as ranks.json names them."""
    return [f"{episode}/{task}" for episode, task in zip(episodes, tasks, strict=True)]


def recording_rows(collate: Callable[[list[dict[str, Any]]], Any], column: str, seen: list[str]) -> Callable:
    """`collate` that first notes each example's row (its `column`, then dropped) in `seen`."""

    def collate_and_record(examples: list[dict[str, Any]]) -> Any:
        seen.extend(example.pop(column) for example in examples)
        return collate(examples)

    return collate_and_record


def write_ranks(output: Path, state: Any, steps: int, seen: list[str]) -> None:
    """Gather every process's steps and rows seen; the main process writes `ranks.json`."""
    from accelerate.utils import gather_object

    mine = {"rank": state.process_index, "steps": steps, "rows": dict(sorted(Counter(seen).items()))}
    ranks = gather_object([mine]) if state.num_processes > 1 else [mine]
    if state.is_main_process:
        report = {"world_size": state.num_processes, "ranks": sorted(ranks, key=lambda rank: rank["rank"])}
        write_json_atomic(output / RANKS_FILE, report)
