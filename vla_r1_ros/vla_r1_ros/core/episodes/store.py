"""`EpisodeStore`: the one writer of a log directory, atomic and idempotent by trial id.

Atomicity (what a crash at any instant leaves behind):
1. Files go into `episodes/.tmp-N/`, each fsynced, then the folder is fsynced. A crash here leaves a
   temp folder that the next writer deletes: the trial never finished being logged, nothing refers to it.
2. `rename(.tmp-N, N)` and fsync of `episodes/`: the folder appears complete or not at all.
3. The index line is appended and fsynced. A crash between 2 and 3 leaves a complete folder missing
   from the index; a crash during 3 leaves a torn last line. Opening the store truncates the torn line
   and re-appends index lines for complete folders missing from it, so no finished episode is lost and
   the index never names a half episode. Numbering resumes after the highest number seen in the index
   or on disk.

Idempotence: a trial id already in the log (indexed, or on disk with its index line pending) is not
written again; `write` returns its existing index line. Producers deliver at least once (the planning
node retries until the logger confirms), so a repeated delivery after a lost confirmation or a logger
restart logs nothing twice.

Errors writing (disk full, unwritable or missing directory) are raised as `EpisodeStoreError` with the
path and the reason; the temp folder is removed so a retry starts clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_r1_ros.core.episodes.document import episode_document, index_entry
from vla_r1_ros.core.episodes.durable import (
    encode_png,
    fsync_dir,
    json_bytes,
    reason,
    store_error,
    write_all,
    write_durable,
)
from vla_r1_ros.core.episodes.layout import (
    AFTER_COLOR_FILE,
    AFTER_DEPTH_FILE,
    COLOR_FILE,
    DEPTH_FILE,
    EPISODE_FILE,
    EPISODE_NAME,
    EPISODES_DIR,
    INDEX_FILE,
    JUDGE_MASK_FILE,
    LOCK_FILE,
    RUN_CONFIG_FILE,
    TMP_PREFIX,
    EpisodeIndexPending,
    EpisodeStoreError,
)
from vla_r1_ros.core.episodes.reading import load_episode, parse_index
from vla_r1_ros.core.episodes.record import CameraFrame, CameraJudgement, TrialLog
from vla_r1_ros.core.episodes.references import References, ReferenceSource


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
        self._by_trial: dict[str, dict[str, Any]] = {}  # trial id -> index line: each trial is written once
        try:
            self.episodes.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            self.close()
            raise store_error("create the episode log in", self.root, exc) from exc
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
            raise store_error("open the episode log in", self.root, exc) from exc
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
        for tmp in self.episodes.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(tmp)
        data = self.index_path.read_bytes()
        entries, good_length = parse_index(data, self.index_path)
        if good_length < len(data):
            os.truncate(self.index_path, good_length)
            os.fsync(self._index_fd)
        self._by_trial = {entry["trial_id"]: entry for entry in entries}
        indexed = {entry["episode"] for entry in entries}
        on_disk = sorted(p.name for p in self.episodes.iterdir() if p.is_dir() and EPISODE_NAME.match(p.name))
        numbers = [int(name) for name in indexed | set(on_disk)]
        self._next = max(numbers, default=0) + 1
        recovered = [name for name in on_disk if name not in indexed]
        for name in recovered:
            entry = index_entry(load_episode(self.root, name))
            self._append_index(entry)
            self._by_trial[entry["trial_id"]] = entry
        return recovered

    def logged(self, trial_id: str) -> dict[str, Any] | None:
        """The index line of a trial already in the log (its index line may still be pending), else None."""
        with self._lock:
            return self._by_trial.get(trial_id)

    def _append_index(self, entry: Mapping[str, Any]) -> None:
        """Append one line and fsync. On failure the file is cut back to its previous end, so a later
        append never lands after a partial line."""
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        end = os.lseek(self._index_fd, 0, os.SEEK_END)
        try:
            write_all(self._index_fd, line)
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
        """Write one episode atomically and return its index line; a trial id already logged is not
        written again (its existing index line is returned). Raises EpisodeStoreError."""
        frame = frame or CameraFrame()
        references = references or References(ReferenceSource.NONE, note="no references given")
        with self._lock:
            if self._index_fd is None:
                raise EpisodeStoreError(f"the episode store of {self.root} is closed")
            self._retry_unindexed()
            if record.trial_id in self._by_trial:
                return self._by_trial[record.trial_id]
            episode = self.next_episode
            files = image_files(frame, record.camera_judgement)
            document = episode_document(episode, record, frame, references, list(notes), self._run_config())
            tmp = self.episodes / f"{TMP_PREFIX}{episode}"
            final = self.episodes / episode
            try:
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir()
                for name, data in files.items():
                    if data is not None:
                        write_durable(tmp / name, data)
                write_durable(tmp / EPISODE_FILE, json_bytes(document))
                fsync_dir(tmp)
                os.rename(tmp, final)
                fsync_dir(self.episodes)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)  # a retry starts clean; the error below is the news
                raise store_error(f"write episode {episode} to", tmp, exc) from exc
            self._next += 1  # the folder exists: its number is taken whatever happens to the index
            entry = index_entry(document)
            self._by_trial[record.trial_id] = entry  # on disk: never written again, indexed or not
            try:
                self._append_index(entry)
            except OSError as exc:
                self._unindexed.append(episode)
                raise EpisodeIndexPending(
                    f"episode {episode} is on disk but appending it to {self.index_path} failed: {reason(exc)} "
                    f"({exc}); it is indexed on the next write or the next open"
                ) from exc
            return entry

    def _run_config(self) -> dict[str, str] | None:
        """The log's run_config.json as an episode names it (file and SHA-256), read at each write: a run
        attached to a running logger writes its own config into the folder before its first trial."""
        try:
            data = (self.root / RUN_CONFIG_FILE).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise store_error("read", self.root / RUN_CONFIG_FILE, exc) from exc
        return {"file": RUN_CONFIG_FILE, "sha256": hashlib.sha256(data).hexdigest()}

    def _retry_unindexed(self) -> None:
        while self._unindexed:
            episode = self._unindexed[0]
            try:
                self._append_index(index_entry(load_episode(self.root, episode)))
            except OSError as exc:
                raise store_error("append to", self.index_path, exc) from exc
            self._unindexed.pop(0)


def image_files(frame: CameraFrame, judgement: CameraJudgement | None) -> dict[str, bytes | None]:
    """An episode's images as PNG bytes by file name: the trial's frame set and the camera judge's evidence."""

    def depth_png(depth: np.ndarray | None, what: str) -> bytes | None:
        return None if depth is None else encode_png(np.asarray(depth, np.uint16), what)

    files = {
        COLOR_FILE: None if frame.color is None else encode_png(frame.color, "colour"),
        DEPTH_FILE: depth_png(frame.depth, "depth"),
    }
    if judgement is not None:
        after = judgement.after
        files[AFTER_COLOR_FILE] = None if after.color is None else encode_png(after.color, "after colour")
        files[AFTER_DEPTH_FILE] = depth_png(after.depth, "after depth")
        for name, mask in judgement.masks.items():
            files[JUDGE_MASK_FILE.format(name)] = encode_png(np.where(mask, 255, 0).astype(np.uint8), f"mask {name}")
    return files
