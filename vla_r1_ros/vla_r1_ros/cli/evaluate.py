"""`vla-r1 eval FILE.jsonl | LOGDIR`: the paper's metrics over predictions.

A JSONL file: each line {"id", "task", "prediction": model text, "reference": answer text}. An episode
log directory (holds index.jsonl): one sample per (episode, task) with a reference — the operator's
labels first, else simulator ground truth (`core.labels.effective_references`); an unlabelled
real-robot episode has none (a trial's own answer is never its reference) and is
counted under "without_reference". Prints the summary {"affordance": {"n", "iou"}, "trajectory": {"n",
"dfd", "hd", "rmse", "avg"}, "format_rate", "parse_failures"}, plus "reference_sources",
"without_reference" and "outcomes" (episodes, judged, successes, judged_by — each episode's judgement in
labels.json first, `core.labels.labelled_episodes`; an unjudged executed trial is no success) for a
log; `--per-sample OUT.jsonl` also writes one record per sample. A line that is not a usable sample
(bad JSON, unknown task, a reference that does not parse) is reported on stderr and left out. Exit
code 0; 1 for an unreadable log; 2 for usage errors (including an unreadable FILE).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE.jsonl|LOGDIR", help="predictions with references ('-' reads stdin), or an episode log"
    )
    parser.add_argument("--per-sample", metavar="OUT.jsonl", type=Path, help="write one record per sample")
    parser.epilog = "examples: vla-r1 eval predictions.jsonl --per-sample scores.jsonl; vla-r1 eval runs/lab"


def _log_samples(logdir: Path, summary_extra: dict) -> list[dict]:
    from vla_r1_ros.core import labels

    logged = list(labels.labelled_episodes(logdir))
    samples = list(labels.eval_samples(logged))
    tasks = sum(len(episode.entry["tasks"]) for episode in logged)
    summary_extra["reference_sources"] = dict(Counter(sample["reference_source"] for sample in samples))
    summary_extra["without_reference"] = tasks - len(samples)
    judged = [episode.outcome for episode in logged if episode.outcome.judged]
    summary_extra["outcomes"] = {
        "episodes": len(logged),
        "judged": len(judged),
        "successes": sum(outcome.success for outcome in judged),
        "judged_by": dict(sorted(Counter(outcome.outcome_source for outcome in judged).items())),
    }
    return samples


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.episodes import INDEX_FILE, EpisodeStoreError
    from vla_r1_ros.core.metrics import score_sample, summarize

    extra: dict = {}
    if args.file != "-" and Path(args.file).is_dir():
        if not (Path(args.file) / INDEX_FILE).is_file():
            print(f"vla-r1 eval: error: {args.file} is not an episode log (no {INDEX_FILE})", file=sys.stderr)
            return 2
        try:
            samples = _log_samples(Path(args.file), extra)
        except EpisodeStoreError as exc:
            print(f"vla-r1 eval: {exc}", file=sys.stderr)
            return 1
        lines = [(sample["id"], sample) for sample in samples]
    else:
        try:
            raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        except OSError as exc:
            print(f"vla-r1 eval: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
        lines = []
        for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
            if line.strip():
                lines.append((f"line {number}", line))
    records = []
    for where, line in lines:
        try:
            sample = json.loads(line) if isinstance(line, str) else line
            if not isinstance(sample, dict):
                raise ValueError("expected a JSON object")
            records.append(score_sample(sample) | ({"reference_source": sample["reference_source"]} if extra else {}))
        except (ValueError, RecursionError) as exc:
            print(f"vla-r1 eval: {where} skipped: {exc}", file=sys.stderr)
    if args.per_sample is not None:
        args.per_sample.write_text("".join(json.dumps(record) + "\n" for record in records))
    print(json.dumps(summarize(records) | extra))
    return 0
