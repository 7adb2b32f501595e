"""The episode store: one folder per finished trial plus an append-only JSONL index, written atomically.

Layout of a log directory (`runs/<name>/`)::

    index.jsonl              one JSON line per episode, appended in episode order
    episodes/000001/         one finished trial
        episode.json         everything but the pixels (see `SCHEMA_VERSION`)
        color.png            the colour frame the model saw (RGB, 8 bit)
        depth.png            the aligned depth frame (16 bit, millimetres, 0 = no depth)
        labels.json          operator labels, written later by `vla-r1 label` (sidecar, optional)
    episodes/.tmp-000002/    an episode being written; never listed in the index
    .lock                    held by the one writer

Why JSONL and not SQLite: an episode is a folder of files anyway, so the index is only a list of
finished folders. Appending one line with one `write` + `fsync` is the whole transaction; the file is
greppable, diffable and readable by `datasets`/pandas while the logger appends; a reader never needs a
lock, a journal or a driver. A torn last line (power cut during the append) is detectable (no newline
or not JSON) and repairable from the episode's own folder, which is the source of truth.

Atomicity (what a crash at any instant leaves behind):
1. Files go into `episodes/.tmp-N/`, each fsynced, then the folder is fsynced. A crash here leaves a
   temp folder that the next writer deletes: the trial never finished being logged, nothing refers to it.
2. `rename(.tmp-N, N)` and fsync of `episodes/`: the folder appears complete or not at all.
3. The index line is appended and fsynced. A crash between 2 and 3 leaves a complete folder missing
   from the index; a crash during 3 leaves a torn last line. Opening the store truncates the torn line
   and re-appends index lines for complete folders missing from it, so no finished episode is lost and
   the index never names a half episode. Numbering resumes after the highest number seen in the index
   or on disk.

Errors writing (disk full, unwritable or missing directory) are raised as `EpisodeStoreError` with the
path and the reason; the temp folder is removed so a retry starts clean.

References and rewards: the rewards of an episode are `core.rewards.score_completion` of the model's
raw text per task against a reference answer — the very function GRPO training uses. Where the
reference comes from is explicit (`ReferenceSource`) and recorded in the episode.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vla_r1_ros.core import prompts, rewards
from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform
from vla_r1_ros.core.metrics import resample_polyline
from vla_r1_ros.core.scene import (
    REFERENCE_WAYPOINTS,
    Scene,
    project_to_normalized,
    reference_box,
    reference_waypoints,
    resolve_target,
)

# Version of episode.json and of the index lines. Readers accept this version and older ones;
# bump it when a field changes meaning (adding optional fields does not need a bump).
SCHEMA_VERSION = 1
LABELS_SCHEMA_VERSION = 1

INDEX_FILE = "index.jsonl"
EPISODES_DIR = "episodes"
EPISODE_FILE = "episode.json"
LABELS_FILE = "labels.json"
COLOR_FILE = "color.png"
DEPTH_FILE = "depth.png"
LOCK_FILE = ".lock"
_TMP_PREFIX = ".tmp-"
_EPISODE_NAME = re.compile(r"^\d{6,}$")

# Depth PNGs hold realsense2_camera's 16UC1 millimetres.
DEPTH_UNITS_M = 0.001


class EpisodeStoreError(RuntimeError):
    """The episode log cannot be written or read (disk full, unwritable directory, damaged index)."""


class EpisodeIndexPending(EpisodeStoreError):
    """The episode is safely on disk but its index line is not yet: the store appends it on its next
    write or open. Writing the trial again would log it twice."""


class ReferenceSource(StrEnum):
    """Where the reference answers that rewards are measured against come from."""

    AUTO = "auto"  # SIMULATOR when the frame has a scene, else SUCCESSFUL_TRIAL
    SIMULATOR = "simulator"  # ground truth: target's segmentation box, ideal surface path
    SUCCESSFUL_TRIAL = "successful_trial"  # real robot: what worked (box acted on, executed EE path)
    OPERATOR = "operator"  # boxes / paths an operator drew (labels.json sidecar)
    NONE = "none"  # no reference: only the format reward and the outcome are known


@dataclass(frozen=True)
class TrialLog:
    """One finished trial, ROS-free (the reward logger fills it from an EpisodeRecord message).

    `prediction` is the parsed output the robot acted on: `model_id`, `valid`, `error`, `format_reward`,
    `inference_latency_s`, `image_size` [w, h], `box_normalized` [cx, cy, w, h] or None, `box_px`
    [x1, y1, x2, y2] or None, `waypoints_normalized` / `waypoints_px` [[x, y], ...] or None, and
    `reasoning` {task: <think> text}. `plan` is the ManipulationPlan as plain JSON (poses as
    {"position": [x, y, z], "orientation": [x, y, z, w]})."""

    trial_id: str
    instruction: str
    stamp_ns: int  # stamp of the colour image the model saw
    tasks: tuple[str, ...]
    raw_texts: Mapping[str, str]  # task -> the model's raw answer text
    prediction: Mapping[str, Any]  # the parsed output the robot acted on (box, waypoints, reasoning, ...)
    plan: Mapping[str, Any]
    executed_ee_path: Sequence[Sequence[float]]  # (N, 3) end-effector positions, robot base frame
    success: bool
    failure_stage: str = ""
    message: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)  # stage -> seconds, in the order they ran


@dataclass(frozen=True)
class CameraFrame:
    """The camera frame a trial used; every part may be missing (the logger never got it)."""

    color: np.ndarray | None = None  # (H, W, 3) uint8 RGB
    depth: np.ndarray | None = None  # (H, W) uint16 millimetres
    camera_info: Mapping[str, Any] | None = None  # frame_id, width, height, k (9), d, distortion_model

    @property
    def intrinsics(self) -> CameraIntrinsics | None:
        info = self.camera_info
        return None if info is None else CameraIntrinsics.from_k(info["width"], info["height"], info["k"])


@dataclass(frozen=True)
class References:
    source: ReferenceSource
    box: tuple[float, float, float, float] | None = None  # normalized centre box
    waypoints: tuple[tuple[float, float], ...] | None = None  # normalized [x, y]
    target: str | None = None  # scene object name (simulator)
    note: str = ""  # why a reference is missing

    def answer(self, task: str) -> Any:
        """The reference output for a task (a box or a waypoint list), or None."""
        return self.box if task == prompts.AFFORDANCE else self.waypoints

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = str(self.source)
        data["box"] = None if self.box is None else list(self.box)
        data["waypoints"] = None if self.waypoints is None else [list(p) for p in self.waypoints]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> References:
        box, waypoints = data.get("box"), data.get("waypoints")
        return cls(
            source=ReferenceSource(data["source"]),
            box=None if box is None else tuple(float(v) for v in box),
            waypoints=None if waypoints is None else tuple((float(x), float(y)) for x, y in waypoints),
            target=data.get("target"),
            note=data.get("note", ""),
        )


# ---------------------------------------------------------------------------------------------------
# References and rewards (pure functions)


def _as_pairs(array: np.ndarray) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in np.asarray(array, dtype=float).reshape(-1, 2))


def select_references(
    record: TrialLog,
    source: ReferenceSource | str = ReferenceSource.AUTO,
    *,
    scene: Scene | None = None,
    intrinsics: CameraIntrinsics | None = None,
    base_T_camera: RigidTransform | None = None,
) -> References:
    """The reference answers for one trial.

    - SIMULATOR (needs the frame's `scene`): the instruction's target object's segmentation box, and
      its ideal surface path to the tray projected into the image (`core.scene`).
    - SUCCESSFUL_TRIAL (a real robot, no ground truth): only a trial that succeeded is evidence. Its
      box is the box the robot acted on; its path is the executed end-effector path projected through
      the camera model (`intrinsics`, `base_T_camera`), resampled to `REFERENCE_WAYPOINTS` points.
    - AUTO: SIMULATOR when a scene is available, else SUCCESSFUL_TRIAL.
    A reference that cannot be made is None with a `note`, never a guess.
    """
    source = ReferenceSource(source)
    if source is ReferenceSource.AUTO:
        source = ReferenceSource.SIMULATOR if scene is not None else ReferenceSource.SUCCESSFUL_TRIAL
    if source is ReferenceSource.SIMULATOR:
        return _simulator_references(record, scene, intrinsics, base_T_camera)
    if source is ReferenceSource.SUCCESSFUL_TRIAL:
        return _successful_trial_references(record, intrinsics, base_T_camera)
    if source is ReferenceSource.NONE:
        return References(ReferenceSource.NONE, note="reference source 'none' requested")
    raise ValueError(f"{source} references come from labels, not from a trial (see read_labels)")


def _simulator_references(
    record: TrialLog,
    scene: Scene | None,
    intrinsics: CameraIntrinsics | None,
    base_T_camera: RigidTransform | None,
) -> References:
    if scene is None or intrinsics is None or base_T_camera is None:
        return References(ReferenceSource.NONE, note="simulator reference needs the scene, camera info and extrinsics")
    target = resolve_target(record.instruction, scene.objects)
    if target is None:
        return References(ReferenceSource.NONE, note=f"instruction names no unique object: {record.instruction!r}")
    notes = []
    box = None
    if target.visible and target.bbox_px is not None:
        box = tuple(float(v) for v in reference_box(target, intrinsics))
    else:
        notes.append(f"{target.name} is not visible: no reference box")
    waypoints = _as_pairs(reference_waypoints(scene, target, intrinsics, base_T_camera))
    return References(ReferenceSource.SIMULATOR, box, waypoints, target=target.name, note="; ".join(notes))


def _successful_trial_references(
    record: TrialLog, intrinsics: CameraIntrinsics | None, base_T_camera: RigidTransform | None
) -> References:
    if not record.success:
        return References(ReferenceSource.NONE, note="trial failed: a real-robot reference needs a successful trial")
    notes = []
    box = record.prediction.get("box_normalized")
    if box is None:
        notes.append("the trial acted on no box")
    waypoints = None
    path = np.asarray(record.executed_ee_path, dtype=float).reshape(-1, 3)
    if len(path) == 0:
        notes.append("no executed end-effector path")
    elif intrinsics is None or base_T_camera is None:
        notes.append("projecting the executed path needs camera info and extrinsics")
    else:
        try:
            projected = project_to_normalized(resample_polyline(path, REFERENCE_WAYPOINTS), intrinsics, base_T_camera)
        except ValueError as exc:  # a point at or behind the camera: the camera model cannot say where it is
            notes.append(f"executed path does not project into the image: {exc}")
        else:
            waypoints = _as_pairs(projected)
    return References(
        ReferenceSource.SUCCESSFUL_TRIAL,
        None if box is None else tuple(float(v) for v in box),
        waypoints,
        note="; ".join(notes),
    )


def episode_rewards(record: TrialLog, references: References) -> dict[str, Any]:
    """Format, region, trajectory and total rewards of a trial, by `core.rewards.score_completion`.

    Per task: `format` (0/1), `task` (GIoU- or Fréchet-based score vs the reference, None without a
    reference) and `total` (0.9 · task + 0.1 · format, None without a reference). Episode-level:
    `format` is the mean over the answered tasks, `region` / `trajectory` the task scores, `total` the
    mean of the per-task totals that have a reference, `success` the trial's outcome.
    """
    per_task: dict[str, dict[str, float | None]] = {}
    for task in record.tasks:
        text = record.raw_texts.get(task, "")
        reference = references.answer(task)
        if reference is None:
            per_task[task] = {"format": float(rewards.format_reward(text)), "task": None, "total": None}
            continue
        try:
            breakdown = rewards.score_completion(task, text, prompts.format_answer("", reference))
        except ValueError as exc:  # an unusable reference (a non-finite coordinate): recorded, not fatal
            per_task[task] = {"format": float(rewards.format_reward(text)), "task": None, "total": None}
            per_task[task]["error"] = f"reference not scorable: {exc}"
            continue
        per_task[task] = {
            "format": float(breakdown.format),
            "task": float(breakdown.task_score),
            "total": float(breakdown.score),
        }
    totals = [scores["total"] for scores in per_task.values() if scores["total"] is not None]
    formats = [scores["format"] for scores in per_task.values()]
    return {
        "format": float(np.mean(formats)) if formats else None,
        "region": per_task.get(prompts.AFFORDANCE, {}).get("task"),
        "trajectory": per_task.get(prompts.TRAJECTORY, {}).get("task"),
        "total": float(np.mean(totals)) if totals else None,
        "success": bool(record.success),
        "per_task": per_task,
    }


# ---------------------------------------------------------------------------------------------------
# Durable file primitives. Every byte the store writes goes through `_write_all`, so one place decides
# what an OS error becomes.


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "directory not writable"
    if exc.errno == errno.ENOTDIR:
        return "a component of the path is not a directory"
    return exc.strerror or str(exc)


def _store_error(action: str, path: Path, exc: OSError) -> EpisodeStoreError:
    return EpisodeStoreError(f"cannot {action} {path}: {_reason(exc)} ({exc})")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_durable(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist), write `data`, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _encode_png(image: np.ndarray, what: str) -> bytes:
    if image.ndim == 3:  # OpenCV writes BGR
        image = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise EpisodeStoreError(f"cannot encode the {what} image as PNG (shape {image.shape}, dtype {image.dtype})")
    return encoded.tobytes()


def _replace_atomic(path: Path, data: bytes) -> None:
    """Write a whole file by temp file + fsync + rename + directory fsync: readers see the old or the
    new content, never a mix."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}")
    try:
        tmp.unlink(missing_ok=True)
        _write_durable(tmp, data)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _store_error("write", path, exc) from exc


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace a text file atomically (summaries, reports next to an episode log). Raises EpisodeStoreError."""
    _replace_atomic(Path(path), text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace a binary file atomically (a report's PNG). Raises EpisodeStoreError."""
    _replace_atomic(Path(path), data)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Replace a JSON file atomically. Raises EpisodeStoreError."""
    _replace_atomic(Path(path), _json_bytes(data))


# ---------------------------------------------------------------------------------------------------
# Reading (no lock: readers run while the logger appends)


def read_index(root: str | Path) -> list[dict[str, Any]]:
    """The index lines of a log directory. A torn last line (a crash during an append; the writer
    repairs it on its next open) is skipped; a damaged line elsewhere is an error."""
    path = Path(root) / INDEX_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _store_error("read", path, exc) from exc
    entries, _good_length = _parse_index(data, path)
    return entries


def _parse_index(data: bytes, path: Path) -> tuple[list[dict[str, Any]], int]:
    """Entries, and the length of the prefix made of complete, valid lines.

    An append writes the newline last, so a crash during it leaves a last line without a newline (or,
    on a filesystem that does not journal data, a last line of garbage): that line is not an entry.
    """
    entries: list[dict[str, Any]] = []
    good = 0
    while (newline := data.find(b"\n", good)) >= 0:
        try:
            entry = json.loads(data[good:newline])
            if not isinstance(entry, dict) or "episode" not in entry:
                raise ValueError("not an index entry")
        except ValueError as exc:
            if newline == len(data) - 1:
                break
            line_number = data.count(b"\n", 0, good) + 1
            raise EpisodeStoreError(f"{path}:{line_number} is damaged ({exc}); repair or remove that line") from exc
        entries.append(entry)
        good = newline + 1
    return entries, good


def episode_dir(root: str | Path, episode: str) -> Path:
    return Path(root) / EPISODES_DIR / episode


def load_episode(root: str | Path, episode: str) -> dict[str, Any]:
    path = episode_dir(root, episode) / EPISODE_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EpisodeStoreError(f"cannot read episode {episode}: {exc}") from exc
    if document.get("schema_version", 0) > SCHEMA_VERSION:
        raise EpisodeStoreError(f"episode {episode} has schema {document['schema_version']} > {SCHEMA_VERSION}")
    return document


def load_color(root: str | Path, episode: str) -> np.ndarray | None:
    path = episode_dir(root, episode) / COLOR_FILE
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_depth(root: str | Path, episode: str) -> np.ndarray | None:
    return cv2.imread(str(episode_dir(root, episode) / DEPTH_FILE), cv2.IMREAD_UNCHANGED)


# Operator labels (`vla-r1 label`, a later tool) live in a sidecar so the episode itself stays
# immutable once indexed. Recognised keys: `success` (bool, overrides the outcome), `box`
# ([cx, cy, w, h] normalized) and `waypoints` ([[x, y], ...] normalized) as operator references,
# `note`, `labeller`, `labelled_at`. Unknown keys are kept.


def read_labels(root: str | Path, episode: str) -> dict[str, Any] | None:
    path = episode_dir(root, episode) / LABELS_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EpisodeStoreError(f"cannot read labels of episode {episode}: {exc}") from exc
    return document.get("labels", {})


def write_labels(root: str | Path, episode: str, labels: Mapping[str, Any]) -> None:
    folder = episode_dir(root, episode)
    if not (folder / EPISODE_FILE).is_file():
        raise EpisodeStoreError(f"no episode {episode} in {root}")
    write_json_atomic(folder / LABELS_FILE, {"schema_version": LABELS_SCHEMA_VERSION, "labels": dict(labels)})


def effective_references(document: Mapping[str, Any], labels: Mapping[str, Any] | None) -> References:
    """The logged references, with operator-labelled box / waypoints taking precedence."""
    logged = References.from_json(document["references"])
    if not labels or not ({"box", "waypoints"} & labels.keys()):
        return logged
    return References(
        ReferenceSource.OPERATOR,
        box=tuple(float(v) for v in labels["box"]) if labels.get("box") is not None else logged.box,
        waypoints=_as_pairs(labels["waypoints"]) if labels.get("waypoints") is not None else logged.waypoints,
        target=logged.target,
        note=f"operator labels over {logged.source}",
    )


def trial_from_document(document: Mapping[str, Any]) -> TrialLog:
    """The TrialLog an episode was written from (to re-score it, e.g. against operator labels)."""
    prediction = document["prediction"]
    return TrialLog(
        trial_id=document["trial_id"],
        instruction=document["instruction"],
        stamp_ns=int(document["stamp_ns"]),
        tasks=tuple(prediction["tasks"]),
        raw_texts=prediction["raw_texts"],
        prediction=prediction["parsed"],
        plan=document["plan"],
        executed_ee_path=document["executed_ee_path"],
        success=bool(document["outcome"]["success"]),
        failure_stage=document["outcome"]["failure_stage"],
        message=document["outcome"]["message"],
        timings=document["timings"],
    )


def index_entry(document: Mapping[str, Any]) -> dict[str, Any]:
    """The index line of an episode: enough to filter and list without opening its folder."""
    rewards_ = document["rewards"]
    return {
        "schema_version": document["schema_version"],
        "episode": document["episode"],
        "dir": f"{EPISODES_DIR}/{document['episode']}",
        "trial_id": document["trial_id"],
        "stamp_ns": document["stamp_ns"],
        "logged_at": document["logged_at"],
        "instruction": document["instruction"],
        "tasks": document["prediction"]["tasks"],
        "success": document["outcome"]["success"],
        "failure_stage": document["outcome"]["failure_stage"],
        "reference_source": document["references"]["source"],
        "rewards": {key: rewards_[key] for key in ("format", "region", "trajectory", "total", "success")},
        "stage_seconds": document["timings"],
        "has_color": document["files"]["color"] is not None,
        "has_depth": document["files"]["depth"] is not None,
        "notes": document["notes"],
    }


# ---------------------------------------------------------------------------------------------------
# Writing


class EpisodeStore:
    """The one writer of a log directory. Opening it recovers from any earlier crash (see module doc).

    Use as a context manager or call `close()`; a second writer on the same directory is refused.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.episodes = self.root / EPISODES_DIR
        self.index_path = self.root / INDEX_FILE
        self._lock = threading.Lock()  # one write at a time, whichever thread calls
        self._lock_fd: int | None = None
        self._index_fd: int | None = None
        self._unindexed: list[str] = []  # complete folders whose index append failed in this process
        try:
            self.episodes.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            self.close()
            raise _store_error("create the episode log in", self.root, exc) from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self.close()
            raise EpisodeStoreError(f"{self.root} is already being written by another process") from exc
        try:
            self._index_fd = os.open(self.index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.recovered = self._recover()
        except OSError as exc:
            self.close()
            raise _store_error("open the episode log in", self.root, exc) from exc
        except EpisodeStoreError:
            self.close()
            raise

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for name in ("_index_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)  # closing the lock file releases the flock
                setattr(self, name, None)

    @property
    def next_episode(self) -> str:
        return f"{self._next:06d}"

    def _recover(self) -> list[str]:
        """Delete temp folders, cut a torn last index line, index complete folders the index lacks.
        Returns the episodes it re-indexed."""
        for tmp in self.episodes.glob(f"{_TMP_PREFIX}*"):
            shutil.rmtree(tmp)
        data = self.index_path.read_bytes()
        entries, good_length = _parse_index(data, self.index_path)
        if good_length < len(data):
            os.truncate(self.index_path, good_length)
            os.fsync(self._index_fd)
        indexed = {entry["episode"] for entry in entries}
        on_disk = sorted(p.name for p in self.episodes.iterdir() if p.is_dir() and _EPISODE_NAME.match(p.name))
        numbers = [int(name) for name in indexed | set(on_disk)]
        self._next = max(numbers, default=0) + 1
        recovered = [name for name in on_disk if name not in indexed]
        for name in recovered:
            self._append_index(index_entry(load_episode(self.root, name)))
        return recovered

    def _append_index(self, entry: Mapping[str, Any]) -> None:
        """Append one line and fsync. On failure the file is cut back to its previous end, so a later
        append never lands after a partial line."""
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        end = os.lseek(self._index_fd, 0, os.SEEK_END)
        try:
            _write_all(self._index_fd, line)
            os.fsync(self._index_fd)
        except OSError:
            with contextlib.suppress(OSError):  # the original error is what the caller must see
                os.ftruncate(self._index_fd, end)
            raise

    def write(
        self,
        record: TrialLog,
        frame: CameraFrame | None = None,
        references: References | None = None,
        notes: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Write one episode atomically and return its index line. Raises EpisodeStoreError."""
        frame = frame or CameraFrame()
        references = references or References(ReferenceSource.NONE, note="no references given")
        with self._lock:
            if self._index_fd is None:
                raise EpisodeStoreError(f"the episode store of {self.root} is closed")
            self._retry_unindexed()
            episode = self.next_episode
            files = {
                COLOR_FILE: None if frame.color is None else _encode_png(frame.color, "colour"),
                DEPTH_FILE: None if frame.depth is None else _encode_png(np.asarray(frame.depth, np.uint16), "depth"),
            }
            document = episode_document(episode, record, frame, references, list(notes))
            tmp = self.episodes / f"{_TMP_PREFIX}{episode}"
            final = self.episodes / episode
            try:
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir()
                for name, data in files.items():
                    if data is not None:
                        _write_durable(tmp / name, data)
                _write_durable(tmp / EPISODE_FILE, _json_bytes(document))
                _fsync_dir(tmp)
                os.rename(tmp, final)
                _fsync_dir(self.episodes)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)  # a retry starts clean; the error below is the news
                raise _store_error(f"write episode {episode} to", tmp, exc) from exc
            self._next += 1  # the folder exists: its number is taken whatever happens to the index
            entry = index_entry(document)
            try:
                self._append_index(entry)
            except OSError as exc:
                self._unindexed.append(episode)
                raise EpisodeIndexPending(
                    f"episode {episode} is on disk but appending it to {self.index_path} failed: {_reason(exc)} "
                    f"({exc}); it is indexed on the next write or the next open"
                ) from exc
            return entry

    def _retry_unindexed(self) -> None:
        while self._unindexed:
            episode = self._unindexed[0]
            try:
                self._append_index(index_entry(load_episode(self.root, episode)))
            except OSError as exc:
                raise _store_error("append to", self.index_path, exc) from exc
            self._unindexed.pop(0)


def episode_document(
    episode: str, record: TrialLog, frame: CameraFrame, references: References, notes: list[str]
) -> dict[str, Any]:
    """The episode.json document of a trial (`frame` gives the camera info and which images exist)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "episode": episode,
        "trial_id": record.trial_id,
        "stamp_ns": int(record.stamp_ns),
        "logged_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "instruction": record.instruction,
        "files": {
            "color": COLOR_FILE if frame.color is not None else None,
            "depth": DEPTH_FILE if frame.depth is not None else None,
        },
        "camera": None if frame.camera_info is None else dict(frame.camera_info),
        "depth_units_m": DEPTH_UNITS_M,
        "prediction": {
            "tasks": list(record.tasks),
            "raw_texts": dict(record.raw_texts),
            "parsed": dict(record.prediction),
        },
        "plan": dict(record.plan),
        "executed_ee_path": [[float(v) for v in point] for point in record.executed_ee_path],
        "timings": {stage: float(seconds) for stage, seconds in record.timings.items()},
        "outcome": {
            "success": bool(record.success),
            "failure_stage": record.failure_stage,
            "message": record.message,
        },
        "references": references.to_json(),
        "rewards": episode_rewards(record, references),
        "notes": notes,
    }


def iter_episodes(root: str | Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(index line, episode.json) of every indexed episode, in index order."""
    for entry in read_index(root):
        yield entry, load_episode(root, entry["episode"])
