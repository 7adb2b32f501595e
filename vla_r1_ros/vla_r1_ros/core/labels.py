"""Operator labels: the judgement and the references a person gives an episode, and what follows from them.

An episode folder is immutable once indexed; labels go into its `labels.json` sidecar
(`{"schema_version": 1, "labels": {…}}`, replaced atomically by `episodes.write_labels`). Keys:

| key | value |
|---|---|
| `success` | bool: the operator's judgement of the trial; overrides the logged outcome |
| `failure_stage` | "" when `success`, else one of `core.outcomes.FAILURE_STAGES` |
| `note` | free text |
| `outcome_source` | "operator" whenever `success` is set |
| `box` | [cx, cy, w, h] normalized: the operator's reference box (affordance task) |
| `waypoints` | [[x, y], …] normalized, ≥ 2 points: the operator's reference path (trajectory task) |
| `labeller`, `labelled_at` | who and when (UTC ISO 8601) the labels were last saved |

Unknown keys are kept. Two writers fill it: `vla-r1 trials --manual-reset` (the judgement right after
each trial) and `vla-r1 label` (the web page: references and outcome). Saving merges into what is
there, so a judgement given at the robot survives drawing a box later; a key set to null is removed.

References for rewards, `vla-r1 eval` and `export-dataset` (`effective_references`): the operator's
box / path first; otherwise the logged ones only when they are ground truth (`simulator`). A
`successful_trial` reference is the trial's own prediction (the box it acted on) and the path its
prediction made the arm drive, so it is never used as ground truth here: such an episode has no
reference until an operator labels it.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vla_r1_ros.core import episodes, prompts
from vla_r1_ros.core.annotate import SHOWN_LABEL_CHARS, SHOWN_TEXT_CHARS, capped
from vla_r1_ros.core.episodes import References, ReferenceSource
from vla_r1_ros.core.outcomes import FAILURE_STAGES, EpisodeOutcome, OutcomeSource, episode_outcome
from vla_r1_ros.core.prediction import checkpoint_and_adapter
from vla_r1_ros.core.trials import REWARD_KEYS, TrialOutcome

JUDGEMENT_KEYS = ("success", "failure_stage", "note")
REFERENCE_KEYS = ("box", "waypoints")
NOTE_MAX_CHARS = 10_000
# Logged references that are ground truth. `successful_trial` is not: it is the trial's own answer.
GROUND_TRUTH_SOURCES = (ReferenceSource.SIMULATOR, ReferenceSource.OPERATOR)


class LabelError(ValueError):
    """Labels, a judgement or an episode name that cannot be used (the message says why)."""


def episode_folder(root: str | Path, episode: Any) -> Path:
    """The folder of an existing episode of the log (`episodes.episode_dir`: names that leave the log are
    refused), as a LabelError: labels are only ever written inside the log directory."""
    try:
        folder = episodes.episode_dir(root, episode)
    except episodes.EpisodeNameError as exc:
        raise LabelError(str(exc)) from exc
    if not (folder / episodes.EPISODE_FILE).is_file():
        raise LabelError(f"no episode {episode} in {root}")
    return folder


def _unit_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LabelError(f"{what} must be a finite number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise LabelError(f"{what} must be within [0, 1] (normalized image coordinates), got {value!r}")
    return float(value)


def _check_box(value: Any) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise LabelError(f"box must be [cx, cy, w, h], got {value!r}")
    box = [_unit_number(v, f"box {name}") for v, name in zip(value, ("cx", "cy", "w", "h"), strict=True)]
    if box[2] <= 0.0 or box[3] <= 0.0:
        raise LabelError(f"box width and height must be > 0, got {box}")
    return box


def _check_waypoints(value: Any) -> list[list[float]]:
    if not isinstance(value, list | tuple) or len(value) < 2:
        raise LabelError(f"waypoints must be a list of at least 2 [x, y] points, got {value!r}")
    points = []
    for index, point in enumerate(value):
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise LabelError(f"waypoint {index} is not an [x, y] pair: {point!r}")
        points.append([_unit_number(v, f"waypoint {index} {axis}") for v, axis in zip(point, "xy", strict=True)])
    return points


def _check_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise LabelError(f"{what} must be a string, got {value!r}")
    if len(value) > NOTE_MAX_CHARS:
        raise LabelError(f"{what} is longer than {NOTE_MAX_CHARS} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800" in JSON): no file can hold it
        raise LabelError(f"{what} is not valid Unicode text: {exc.reason} at {exc.start}") from exc
    return value


def check_labels(labels: Mapping[str, Any]) -> dict[str, Any]:
    """A validated copy of a labels mapping (module doc); raises LabelError naming the bad key."""
    if not isinstance(labels, Mapping):
        raise LabelError(f"labels must be a JSON object, got {type(labels).__name__}")
    checked = dict(labels)
    if "box" in checked:
        checked["box"] = _check_box(checked["box"])
    if "waypoints" in checked:
        checked["waypoints"] = _check_waypoints(checked["waypoints"])
    for key in ("note", "labeller", "labelled_at"):
        if key in checked:
            checked[key] = _check_text(checked[key], key)
    if "success" in checked:
        success = checked["success"]
        if not isinstance(success, bool):
            raise LabelError(f"success must be true or false, got {success!r}")
        stage = checked.get("failure_stage", "")
        if success and stage:
            raise LabelError(f"a successful trial has no failure stage (got {stage!r})")
        if not success and stage not in FAILURE_STAGES:
            raise LabelError(
                f"failure_stage must be one of {', '.join(FAILURE_STAGES)} for a failed trial, got {stage!r}"
            )
        checked["failure_stage"] = stage
        checked["outcome_source"] = OutcomeSource.OPERATOR
    elif "failure_stage" in checked:
        raise LabelError("failure_stage needs success (false)")
    return checked


def load_labels(root: str | Path, episode: str) -> dict[str, Any]:
    """The labels of an episode ({} when it has none). Raises LabelError for a bad episode name."""
    episode_folder(root, episode)
    return episodes.read_labels(root, episode) or {}


def save_labels(
    root: str | Path,
    episode: str,
    updates: Mapping[str, Any],
    labeller: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Merge `updates` into the episode's labels (null removes a key), validate, stamp who and when, and
    replace labels.json atomically. Returns the labels written. Raises LabelError / EpisodeStoreError;
    on an error nothing is written."""
    if not isinstance(updates, Mapping):
        raise LabelError(f"labels must be a JSON object, got {type(updates).__name__}")
    with _locked(episode_folder(root, episode)):
        merged = load_labels(root, episode)
        if "success" in updates:  # a new judgement replaces the old one as a whole
            merged.pop("failure_stage", None)
        for key, value in updates.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if "success" not in merged:
            merged.pop("outcome_source", None)
        merged["labeller"] = labeller if labeller is not None else getpass.getuser()
        merged["labelled_at"] = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        checked = check_labels(merged)
        episodes.write_labels(root, episode, checked)
    return checked


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive flock on the episode folder for a read-merge-write: the label page's threads and a
    `vla-r1 trials` judging the same log never lose each other's updates."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def has_operator_reference(labels: Mapping[str, Any]) -> bool:
    return any(labels.get(key) is not None for key in REFERENCE_KEYS)


def effective_references(document: Mapping[str, Any], labels: Mapping[str, Any]) -> References:
    """The references an episode is scored and exported against (module doc): per task the operator's
    label, else the logged reference when it is ground truth, else none."""
    logged = References.from_json(document["references"])
    trusted = logged.source in GROUND_TRUTH_SOURCES
    box = labels.get("box")
    waypoints = labels.get("waypoints")
    if box is None and waypoints is None:
        if trusted:
            return logged
        why = (
            f"{logged.source} references are the trial's own prediction, not ground truth: label the episode "
            "(vla-r1 label)"
            if logged.source is ReferenceSource.SUCCESSFUL_TRIAL
            else logged.note or f"no reference logged ({logged.source})"
        )
        return References(ReferenceSource.NONE, target=logged.target, note=why)
    parts = []
    for task, labelled, fallback in (
        (prompts.AFFORDANCE, box, logged.box),
        (prompts.TRAJECTORY, waypoints, logged.waypoints),
    ):
        if labelled is not None:
            source = ReferenceSource.OPERATOR
        else:
            source = logged.source if trusted and fallback else ReferenceSource.NONE
        parts.append(f"{task}: {source}")
    return References(
        ReferenceSource.OPERATOR,
        box=tuple(float(v) for v in box) if box is not None else (logged.box if trusted else None),
        waypoints=(
            tuple((float(x), float(y)) for x, y in waypoints)
            if waypoints is not None
            else (logged.waypoints if trusted else None)
        ),
        target=logged.target,
        note="; ".join(parts),
    )


def labelled_rewards(document: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, Any]:
    """The episode's rewards re-scored (`episodes.episode_rewards`, i.e. `core.rewards.score_completion`)
    against its effective references, with the effective outcome's (judged) success as `success`."""
    trial = replace(episodes.trial_from_document(document), success=episode_outcome(document, labels).success)
    return episodes.episode_rewards(trial, effective_references(document, labels))


@dataclass(frozen=True)
class LabelledEpisode:
    """One episode of a log as every reader sees it: what was logged, its labels, and what follows."""

    entry: dict[str, Any]  # its index line
    document: dict[str, Any]  # its episode.json
    labels: dict[str, Any]  # its labels.json ({} without one)
    outcome: EpisodeOutcome  # core.outcomes.episode_outcome: the judgement in the labels first
    references: References  # effective_references: the operator's, else ground truth, else none
    rewards: dict[str, Any]  # labelled_rewards: re-scored against `references`

    @property
    def name(self) -> str:
        return self.entry["episode"]


def labelled_episodes(root: str | Path) -> Iterator[LabelledEpisode]:
    """Every indexed episode of a log with its labels applied, in index order: what the summary, the
    report, eval, the export and the label page read (none of them reads a logged outcome directly)."""
    for entry, document in episodes.iter_episodes(root):
        labels = episodes.read_labels(root, entry["episode"]) or {}
        yield LabelledEpisode(
            entry,
            document,
            labels,
            episode_outcome(document, labels),
            effective_references(document, labels),
            labelled_rewards(document, labels),
        )


def trial_outcomes_from_log(root: str | Path, ran: Sequence[TrialOutcome] = ()) -> list[TrialOutcome]:
    """The trials of a log as the summary counts them: each episode's effective outcome and re-scored
    rewards. `ran`: the run's own outcomes (`trials.json`), when there are some: their order, layout
    seed and wall time are kept, and a trial the log never received stays as the run saw it."""
    logged = {episode.document["trial_id"]: episode for episode in labelled_episodes(root)}
    outcomes = []
    for trial in ran:
        episode = logged.pop(trial.episode_id, None)
        outcomes.append(trial if episode is None else _with_episode(trial, episode))
    outcomes.extend(_logged_trial(len(outcomes) + index, episode) for index, episode in enumerate(logged.values()))
    return outcomes


def outcomes_by_checkpoint(roots: Sequence[str | Path]) -> dict[tuple[str, str], list[TrialOutcome]]:
    """The episodes of the logs at `roots` as the summary counts them (labels applied), grouped by the
    (checkpoint, adapter) their prediction's model id names, in the order each first appears."""
    runs: dict[tuple[str, str], list[TrialOutcome]] = {}
    for root in roots:
        for episode in labelled_episodes(root):
            key = checkpoint_and_adapter(episode.document["prediction"].get("model_id", ""))
            runs.setdefault(key, []).append(_logged_trial(len(runs.get(key, ())), episode))
    return runs


def _logged_trial(index: int, episode: LabelledEpisode) -> TrialOutcome:
    """A logged episode as a trial of its own (no run's `trials.json` to say its layout seed)."""
    document = episode.document
    blank = TrialOutcome(index, -1, document["instruction"], "", False, episode_id=document["trial_id"])
    return _with_episode(replace(blank, stage_seconds=dict(document["timings"])), episode)


def _with_episode(trial: TrialOutcome, episode: LabelledEpisode) -> TrialOutcome:
    outcome = episode.outcome
    return replace(
        trial,
        target=episode.references.target or trial.target,
        success=outcome.success,
        failure_stage=outcome.failure_stage,
        message=outcome.message or trial.message,
        rewards={key: float(episode.rewards[key]) for key in REWARD_KEYS if episode.rewards.get(key) is not None},
        outcome_source=outcome.outcome_source,
    )


def eval_samples(logged: Iterable[LabelledEpisode]) -> Iterator[dict[str, Any]]:
    """`vla-r1 eval` samples of a log's episodes: per (episode, task) with an effective reference, the
    model's raw text as `prediction` and the reference in the model's format as `reference`."""
    for episode in logged:
        document, references = episode.document, episode.references
        for task in document["prediction"]["tasks"]:
            output = references.answer(task)
            if output is None:
                continue
            yield {
                "id": f"{episode.name}/{task}",
                "task": task,
                "prediction": document["prediction"]["raw_texts"].get(task, ""),
                "reference": prompts.format_answer("", output),
                "reference_source": str(references.source),
            }


# ---------------------------------------------------------------------------------------------------
# Judging trials at the robot (`vla-r1 trials --manual-reset`)


def ask_judgement(ask: Callable[[str], str], robot_report: str) -> dict[str, Any]:
    """Ask the operator about one trial through `ask` (e.g. `input`) until the answers are valid:
    success (y/n), then for a failure the stage, then an optional note. EOFError passes through."""
    prompt = f"robot reports: {robot_report}\nDid the trial succeed? [y/n] "
    while (answer := ask(prompt).strip().lower()) not in ("y", "yes", "n", "no"):
        prompt = "Did the trial succeed? Please answer y or n: "
    success = answer.startswith("y")
    stage = ""
    prompt = f"failure stage ({', '.join(FAILURE_STAGES)}): "
    while not success and (stage := ask(prompt).strip().lower()) not in FAILURE_STAGES:
        prompt = f"not a stage; failure stage ({', '.join(FAILURE_STAGES)}): "
    note = ask("note (Enter for none): ").strip()
    return {"success": success, "failure_stage": stage, "note": note}


def parse_judgement(line: str) -> dict[str, Any]:
    """One judgement as a JSON line (`--judge FILE`, an `--on-exception` command's answer); LabelError."""
    try:
        judgement = json.loads(line)
        if not isinstance(judgement, dict) or "success" not in judgement:
            raise LabelError('expected an object with "success"')
        unknown = set(judgement) - set(JUDGEMENT_KEYS)
        if unknown:
            raise LabelError(f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(JUDGEMENT_KEYS)}")
        checked = check_labels(judgement)
    except (ValueError, RecursionError) as exc:
        raise LabelError(str(exc)) from exc
    return {key: checked.get(key, "") for key in JUDGEMENT_KEYS}


def load_judgements(path: str | Path, count: int) -> list[dict[str, Any]]:
    """The `--judge FILE` answers: one JSON object per line, in trial order, exactly `count` of them:
    `{"success": true}` or `{"success": false, "failure_stage": "grasp", "note": "slipped"}`. Blank
    lines are ignored. Raises LabelError naming the line; reading happens before any trial runs."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"cannot read judgements {path}: {exc}") from exc
    judgements = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            judgements.append(parse_judgement(line))
        except LabelError as exc:
            raise LabelError(f"{path}:{number}: {exc}") from exc
    if len(judgements) != count:
        raise LabelError(f"{path} holds {len(judgements)} judgements for {count} trials")
    return judgements


def find_episode(root: str | Path, trial_id: str) -> str | None:
    """The episode name the reward logger gave a trial, from the index."""
    for entry in episodes.read_index(root):
        if entry.get("trial_id") == trial_id:
            return entry["episode"]
    return None


def record_judgement(
    root: str | Path, outcome: TrialOutcome, judgement: Mapping[str, Any], labeller: str | None = None
) -> tuple[TrialOutcome, str | None]:
    """Store an operator's judgement (`success`, `failure_stage`, `note`) in the labels of the trial's
    episode at once (atomically; an interrupted run keeps every judgement given before), and return the
    judged outcome and the episode (None: the trial left no episode, e.g. a timeout — nothing stored)."""
    updates = {"success": judgement["success"], "note": judgement.get("note") or None}
    if not judgement["success"]:
        updates["failure_stage"] = judgement["failure_stage"]
    check_labels({key: value for key, value in updates.items() if value is not None})
    episode = find_episode(root, outcome.episode_id) if outcome.episode_id else None
    rewards = outcome.rewards
    if episode is not None:
        saved = save_labels(root, episode, updates, labeller=labeller)
        # Re-scored: an unlabelled real-robot trial has no reference, so no task reward yet (not the
        # circular one the logger computed against the trial's own answer).
        rescored = labelled_rewards(episodes.load_episode(root, episode), saved)
        rewards = {key: float(rescored[key]) for key in REWARD_KEYS if rescored.get(key) is not None}
    judged = replace(
        outcome,
        success=bool(judgement["success"]),
        failure_stage=judgement.get("failure_stage", "") if not judgement["success"] else "",
        message=judgement.get("note") or outcome.message,
        rewards=rewards,
        outcome_source=OutcomeSource.OPERATOR,
    )
    return judged, episode


# ---------------------------------------------------------------------------------------------------
# What the labelling page shows (`vla-r1 label`)


def camera_said(document: Mapping[str, Any]) -> bool | None:
    """The camera judge's own verdict of an episode (success or not), or None when it decided nothing
    (no camera judge, "cannot judge", or handed to the operator)."""
    verdict = document.get("vision_judge") or {}
    if not verdict.get("judged") or verdict.get("asks_operator"):
        return None
    return bool(verdict.get("success"))


def camera_disagrees(document: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """An operator's judgement and the camera's that differ: how a lab measures the camera on its cell."""
    camera = camera_said(document)
    return camera is not None and "success" in labels and bool(labels["success"]) != camera


def episode_summaries(root: str | Path) -> list[dict[str, Any]]:
    """One line per indexed episode for the page's list: `labelled` means an operator reference (box or
    path) was drawn; `judged` that the outcome is the operator's; `camera` the camera judge's verdict
    (None: it decided nothing) and `camera_disagrees` whether the operator's differs from it."""
    return [
        {
            "episode": episode.name,
            "instruction": capped(episode.document["instruction"], SHOWN_LABEL_CHARS),
            "success": episode.outcome.success,
            "outcome_source": episode.outcome.outcome_source,
            "judged": "success" in episode.labels,
            "labelled": has_operator_reference(episode.labels),
            "reference_source": str(episode.references.source),
            "camera": camera_said(episode.document),
            "camera_disagrees": camera_disagrees(episode.document, episode.labels),
        }
        for episode in labelled_episodes(root)
    ]


def episode_view(root: str | Path, episode: str) -> dict[str, Any]:
    """Everything the page needs about one episode: the prediction to draw over the frame, the logged
    and the effective outcome, references and rewards, and the labels. Logged text is shown capped
    (`annotate.capped`): the page must stay usable with a megabyte of it."""
    episode_folder(root, episode)
    document = episodes.load_episode(root, episode)
    labels = episodes.read_labels(root, episode) or {}
    parsed = document["prediction"]["parsed"]
    camera = document.get("camera") or {}
    image_size = [camera["width"], camera["height"]] if camera else parsed.get("image_size")
    logged_rewards = {key: value for key, value in document["rewards"].items() if key != "per_task"}
    outcome = episode_outcome(document, labels).to_json()
    rescored = labelled_rewards(document, labels)
    camera = document.get("vision_judge")
    return {
        "episode": episode,
        "trial_id": document["trial_id"],
        "camera": None
        if camera is None
        else {
            "said": camera_said(document),
            "failure_stage": camera.get("failure_stage", ""),
            "confidence": camera.get("confidence"),
            "message": capped(str(camera.get("message", "")), SHOWN_LABEL_CHARS),
        },
        "camera_disagrees": camera_disagrees(document, labels),
        "instruction": capped(document["instruction"], SHOWN_TEXT_CHARS),
        "logged_at": document["logged_at"],
        "has_color": document["files"]["color"] is not None,
        "image_size": image_size,
        "prediction": {
            "box": parsed.get("box_normalized"),
            "waypoints": parsed.get("waypoints_normalized"),
            "reasoning": {
                task: capped(text, SHOWN_TEXT_CHARS) for task, text in (parsed.get("reasoning") or {}).items()
            },
            "raw_texts": {
                task: capped(text, SHOWN_TEXT_CHARS) for task, text in document["prediction"]["raw_texts"].items()
            },
            "error": capped(parsed.get("error", ""), SHOWN_TEXT_CHARS),
        },
        "logged_outcome": document["outcome"] | {"message": capped(document["outcome"]["message"], SHOWN_TEXT_CHARS)},
        "outcome": outcome | {"message": capped(outcome["message"], SHOWN_TEXT_CHARS)},
        "logged_references": document["references"],
        "references": effective_references(document, labels).to_json(),
        "logged_rewards": logged_rewards,
        "rewards": {key: value for key, value in rescored.items() if key != "per_task"},
        "labels": labels,
        "notes": [capped(note, SHOWN_TEXT_CHARS) for note in document["notes"]],
        "failure_stages": list(FAILURE_STAGES),
    }
