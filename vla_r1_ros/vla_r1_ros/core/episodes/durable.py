"""Durable file primitives. Every byte the episode store writes goes through `_write_all`, so one place
decides what an OS error becomes (`EpisodeStoreError` with the path and a plain reason)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vla_r1_ros.core.episodes.layout import TMP_PREFIX, EpisodeStoreError


def reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "directory not writable"
    if exc.errno == errno.ENOTDIR:
        return "a component of the path is not a directory"
    return exc.strerror or str(exc)


def store_error(action: str, path: Path, exc: OSError) -> EpisodeStoreError:
    return EpisodeStoreError(f"cannot {action} {path}: {reason(exc)} ({exc})")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_durable(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist), write `data`, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def encode_png(image: np.ndarray, what: str) -> bytes:
    if image.ndim == 3:  # OpenCV writes BGR
        image = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise EpisodeStoreError(f"cannot encode the {what} image as PNG (shape {image.shape}, dtype {image.dtype})")
    return encoded.tobytes()


def _replace_atomic(path: Path, data: bytes) -> None:
    """Write a whole file by temp file + fsync + rename + directory fsync: readers see the old or the
    new content, never a mix."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    try:
        tmp.unlink(missing_ok=True)
        write_durable(tmp, data)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise store_error("write", path, exc) from exc


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace a text file atomically (summaries, reports next to an episode log). Raises EpisodeStoreError."""
    _replace_atomic(Path(path), text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace a binary file atomically (a report's PNG). Raises EpisodeStoreError."""
    _replace_atomic(Path(path), data)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Replace a JSON file atomically. Raises EpisodeStoreError."""
    _replace_atomic(Path(path), json_bytes(data))
