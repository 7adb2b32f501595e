"""Reading an episode log (no lock: readers run while the logger appends), and operator labels."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vla_r1_ros.core.episodes.durable import store_error, write_json_atomic
from vla_r1_ros.core.episodes.layout import (
    COLOR_FILE,
    DEPTH_FILE,
    EPISODE_FILE,
    INDEX_FILE,
    LABELS_FILE,
    LABELS_SCHEMA_VERSION,
    SCHEMA_VERSION,
    EpisodeStoreError,
    episode_dir,
)


def read_index(root: str | Path) -> list[dict[str, Any]]:
    """The index lines of a log directory. A torn last line (a crash during an append; the writer
    repairs it on its next open) is skipped; a damaged line elsewhere is an error."""
    path = Path(root) / INDEX_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise store_error("read", path, exc) from exc
    entries, _good_length = parse_index(data, path)
    return entries


def parse_index(data: bytes, path: Path) -> tuple[list[dict[str, Any]], int]:
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


# Operator labels live in a sidecar so the episode itself stays immutable once indexed. Their keys, their
# validation and what they change (outcome, references, rewards) are `core.labels`; these two only move
# the file.


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


def iter_episodes(root: str | Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(index line, episode.json) of every indexed episode, in index order."""
    for entry in read_index(root):
        yield entry, load_episode(root, entry["episode"])
