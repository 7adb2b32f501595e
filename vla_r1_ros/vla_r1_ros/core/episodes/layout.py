"""The on-disk layout of an episode log: names, schema versions and the store's errors.

index.jsonl              one JSON line per episode, appended in episode order
episodes/000001/         one finished trial
    episode.json         everything but the pixels (see `SCHEMA_VERSION`)
    color.png            the colour frame the model saw (RGB, 8 bit)
    depth.png            the aligned depth frame (16 bit, millimetres, 0 = no depth)
    labels.json          operator labels (sidecar, optional)
episodes/.tmp-000002/    an episode being written; never listed in the index
.lock                    held by the one writer
"""

from __future__ import annotations

import re
from pathlib import Path

# Version of episode.json and of the index lines. Readers accept this version and older ones;
# bump it when a field changes meaning (adding optional fields does not need a bump).
# 2: `prediction` is `core.prediction.Prediction.to_json()`; `outcome` has `outcome_source`; `prompts`.
SCHEMA_VERSION = 2
LABELS_SCHEMA_VERSION = 1

INDEX_FILE = "index.jsonl"
EPISODES_DIR = "episodes"
EPISODE_FILE = "episode.json"
LABELS_FILE = "labels.json"
COLOR_FILE = "color.png"
DEPTH_FILE = "depth.png"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
EPISODE_NAME = re.compile(r"^\d{6,}$")

# Depth PNGs hold realsense2_camera's 16UC1 millimetres.
DEPTH_UNITS_M = 0.001


class EpisodeStoreError(RuntimeError):
    """The episode log cannot be written or read (disk full, unwritable directory, damaged index)."""


class EpisodeIndexPending(EpisodeStoreError):
    """The episode is safely on disk but its index line is not yet: the store appends it on its next
    write or open. Writing the trial again would log it twice."""


def episode_dir(root: str | Path, episode: str) -> Path:
    return Path(root) / EPISODES_DIR / episode
