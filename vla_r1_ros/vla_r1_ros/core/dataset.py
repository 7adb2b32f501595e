"""Logged episodes -> VLA-R1 training data: ShareGPT JSON (the official record format) and a Hugging Face
`datasets` dataset for TRL's GRPOTrainer.

One record per (episode, task) that has a reference answer for the task:

- ShareGPT (`vla_r1_sharegpt.json`), exactly the official record: `{"image": "images/<episode>.png",
  "conversations": [{"from": "human", "value": instruction + suffix}, {"from": "gpt", "value": answer}]}`
  with the task's verbatim suffix (`core.prompts.build_prompt`, ending in `\\n<image>`).
- `hf/` (`datasets.load_from_disk`): columns `prompt` (conversational, the official RL stage's layout:
  the text split at its `<image>`, an image placeholder there that TRL fills from `image`), `image`,
  `task`, `ground_truth`, `episode`.

The gpt turn and `ground_truth` are the REFERENCE answer — simulator ground truth or an operator label
(`TRAINING_REFERENCE_SOURCES`) — in the model's text format (`prompts.format_answer`), never the
model's own output: SFT on it teaches the right box / path, and the GRPO task reward compares against
it. Episodes whose references came from the trial itself (`successful_trial`: the box it acted on and
the path it executed, i.e. its own prediction) are skipped. The `<think>` part is the model's own
reasoning for that task from the logged trial (the dataset's answers carry reasoning; the rewards never
read it). Filter with `only_success` / `min_reward` so the
reasoning kept is reasoning that led to a good answer.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vla_r1_ros.core import episodes, prompts
from vla_r1_ros.core.labels import labelled_episodes

SHAREGPT_FILE = "vla_r1_sharegpt.json"
HF_DIR = "hf"
IMAGES_DIR = "images"
SUMMARY_FILE = "export.json"
IMAGE_TOKEN = "<image>"  # where the image goes in a prompt (the task suffixes end in it)


class ExportError(RuntimeError):
    """The export cannot be written (output exists, nothing to export, unreadable log)."""


@dataclass
class ExportSummary:
    logdir: str
    out: str
    records: int = 0
    episodes: int = 0
    by_task: Counter = field(default_factory=Counter)
    by_reference_source: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # reason -> count (per episode or per task)
    warnings: list[str] = field(default_factory=list)  # per episode: what was wrong with what it logged

    def to_json(self) -> dict[str, Any]:
        return {
            "logdir": self.logdir,
            "out": self.out,
            "records": self.records,
            "episodes": self.episodes,
            "by_task": dict(self.by_task),
            "by_reference_source": dict(self.by_reference_source),
            "skipped": dict(self.skipped),
            "warnings": list(self.warnings),
        }

    def skip(self, reason: str, episode: str | None = None, detail: str = "") -> None:
        """Count a skipped episode or task; an episode whose logged data is unusable also gets a warning."""
        self.skipped[reason] += 1
        if episode is not None:
            self.warnings.append(f"episode {episode} skipped: {detail or reason}")


# References that are ground truth, not the trial's own prediction: the only ones an export trains on.
TRAINING_REFERENCE_SOURCES = (episodes.ReferenceSource.SIMULATOR, episodes.ReferenceSource.OPERATOR)


def prompt_messages(instruction: str, task: str) -> list[dict[str, Any]]:
    """The `prompt` column: the official RL stage's user message (verl `rl_dataset._build_messages`) —
    the prompt split at its literal `<image>`, a bare `{"type": "image"}` placeholder at that position
    (TRL fills it from the `image` column), no leading space (unlike inference, `prompts.build_messages`)."""
    segments = [segment for segment in re.split(f"({IMAGE_TOKEN})", prompts.build_prompt(instruction, task)) if segment]
    content = [{"type": "image"} if part == IMAGE_TOKEN else {"type": "text", "text": part} for part in segments]
    return [{"role": "user", "content": content}]


def sharegpt_record(image: str, instruction: str, task: str, answer: str) -> dict[str, Any]:
    return {
        "image": image,
        "conversations": [
            {"from": "human", "value": prompts.build_prompt(instruction, task)},
            {"from": "gpt", "value": answer},
        ],
    }


def _reasoning(document: dict[str, Any], task: str) -> str:
    return (document["prediction"]["parsed"].get("reasoning") or {}).get(task) or ""


def _text_problem(text: str, what: str) -> str | None:
    """Why logged text cannot go into a record, or None. Each `<image>` in a record stands for one image
    (the prompt is split there), so text holding that token would ask for a second one; a lone
    surrogate (a `\\ud800` escape in a hand-edited episode.json) cannot be written as UTF-8."""
    if IMAGE_TOKEN in text:
        return f"{what} contains the image token {IMAGE_TOKEN}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{what} is not valid Unicode text ({exc.reason} at character {exc.start})"
    return None


def _color_png(folder: Path) -> tuple[bytes | None, str]:
    """The episode's colour PNG, or None and why (missing, unreadable or not an image)."""
    path = folder / episodes.COLOR_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror}"
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        return None, f"{path} is not a readable image"
    return data, ""


def _rows(
    logdir: Path, min_reward: float | None, only_success: bool, tasks: Sequence[str], summary: ExportSummary
) -> Iterator[dict[str, Any]]:
    """Export rows (episode, task, instruction, answer, reference source, colour PNG bytes) of a log;
    counts what it skips, and why, in `summary` (with a warning for an episode whose logged image or
    text is unusable: the export goes on without it).

    Every episode is read through `labels.labelled_episodes`: operator labels (`labels.json`) take
    precedence — their `success` overrides the outcome (`only_success` keeps judged successes only: an
    executed real-arm trial nobody judged is not one), their `box` / `waypoints` are the references,
    and the answers are re-scored against them (`labels.labelled_rewards`, the same `score_completion`
    the logger used). Without labels only ground
    truth is a reference: a `successful_trial` reference is the trial's own prediction and never becomes
    a record's answer. `min_reward` keeps a task's record when the logged answer to that task scored at
    least that total against the reference.
    """
    for logged in labelled_episodes(logdir):
        episode, document, references = logged.name, logged.document, logged.references
        if only_success and not logged.outcome.success:
            summary.skip("not judged a success" if not logged.outcome.judged else "failed trial")
            continue
        if document["files"]["color"] is None:
            summary.skip("no colour image")
            continue
        if references.source not in TRAINING_REFERENCE_SOURCES:
            # Said by what the episode logged: an unlabelled real-robot trial's references are its own answer.
            logged_source = document["references"]["source"]
            summary.skip(f"{logged_source} references (not simulator or operator)")
            continue
        scores = logged.rewards["per_task"]
        rows = []
        for task in tasks:
            output = references.answer(task)
            if output is None:
                summary.skip(f"{task}: no reference")
                continue
            total = scores.get(task, {}).get("total")
            if min_reward is not None and (total is None or total < min_reward):
                summary.skip(f"{task}: reward below {min_reward}")
                continue
            rows.append(
                {
                    "episode": episode,
                    "task": task,
                    "instruction": document["instruction"],
                    "ground_truth": prompts.format_answer(_reasoning(document, task), output),
                    "reference_source": str(references.source),
                }
            )
        if not rows:
            continue
        texts = [("the instruction", document["instruction"])] + [
            (f"the {r['task']} answer", r["ground_truth"]) for r in rows
        ]
        problem = next(filter(None, (_text_problem(text, what) for what, text in texts)), None)
        if problem is not None:
            summary.skip("text that cannot go into a record", episode, problem)
            continue
        # The layout's file name, not the one episode.json gives: the document's text must not pick a file.
        color_png, problem = _color_png(episodes.episode_dir(logdir, episode))
        if color_png is None:
            summary.skip("colour image missing or unreadable", episode, problem)
            continue
        for row in rows:
            yield row | {"color_png": color_png}
        summary.episodes += 1


def export_dataset(
    logdir: str | Path,
    out: str | Path,
    *,
    min_reward: float | None = None,
    only_success: bool = False,
    tasks: Sequence[str] = prompts.TASKS,
    overwrite: bool = False,
) -> ExportSummary:
    """Write `out/vla_r1_sharegpt.json`, `out/images/`, `out/hf/` and `out/export.json`."""
    from datasets import Dataset, Features, Image, List, Value

    logdir, out = Path(logdir), Path(out)
    for task in tasks:
        if task not in prompts.TASKS:
            raise ExportError(f"unknown task {task!r}; expected one of {', '.join(prompts.TASKS)}")
    if not (logdir / episodes.INDEX_FILE).is_file():
        raise ExportError(f"{logdir} is not an episode log (no {episodes.INDEX_FILE})")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} exists and is not empty (pass overwrite to replace it)")
        shutil.rmtree(out)
    summary = ExportSummary(str(logdir), str(out))
    rows = list(_rows(logdir, min_reward, only_success, tasks, summary))
    if not rows:
        raise ExportError(f"no episode in {logdir} passes the filters (skipped: {dict(summary.skipped)})")

    (out / IMAGES_DIR).mkdir(parents=True)
    sharegpt = []
    for row in rows:
        image = f"{IMAGES_DIR}/{row['episode']}.png"
        if not (out / image).exists():  # both tasks of an episode share its image
            (out / image).write_bytes(row["color_png"])
        row["image"] = {"bytes": row["color_png"], "path": image}
        sharegpt.append(sharegpt_record(image, row["instruction"], row["task"], row["ground_truth"]))
        summary.records += 1
        summary.by_task[row["task"]] += 1
        summary.by_reference_source[row["reference_source"]] += 1
    (out / SHAREGPT_FILE).write_text(json.dumps(sharegpt, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # Explicit features: the prompt's content parts are {type, text} structs (text is null for the image
    # placeholder); `image` carries the PNG bytes, so hf/ is self-contained (save_to_disk keeps paths as
    # paths otherwise, and the dataset would break when moved).
    message = {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
    features = Features(
        {
            "prompt": List(message),
            "image": Image(),
            "task": Value("string"),
            "ground_truth": Value("string"),
            "episode": Value("string"),
        }
    )
    dataset = Dataset.from_dict(
        {
            "prompt": [prompt_messages(row["instruction"], row["task"]) for row in rows],
            "image": [row["image"] for row in rows],
            "task": [row["task"] for row in rows],
            "ground_truth": [row["ground_truth"] for row in rows],
            "episode": [row["episode"] for row in rows],
        },
        features=features,
    )
    dataset.save_to_disk(str(out / HF_DIR))
    summary_json = {
        **summary.to_json(),
        "filters": {"min_reward": min_reward, "only_success": only_success, "tasks": list(tasks)},
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary_json, indent=2) + "\n", encoding="utf-8")
    return summary


def load_hf_dataset(path: str | Path):
    """The `datasets` form of an export: `path` is the export directory or its `hf/` folder."""
    from datasets import load_from_disk

    path = Path(path)
    return load_from_disk(str(path / HF_DIR if (path / HF_DIR).is_dir() else path))
