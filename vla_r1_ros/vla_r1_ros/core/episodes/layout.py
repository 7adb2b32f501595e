"""The on-disk layout of an episode log: names, schema versions and the store's errors.

index.jsonl              one JSON line per episode, appended in episode order
episodes/000001/         one finished trial
    episode.json         everything but the pixels (see `SCHEMA_VERSION`)
    color.png            the colour frame the model saw (RGB, 8 bit)
    depth.png            the aligned depth frame (16 bit, millimetres, 0 = no depth)
    labels.json          operator labels (sidecar, optional)
    after_color.png      the camera judge's frame set after the trial (`judge: vision`; optional)
    after_depth.png
    judge_<mask>.png     the masks the camera judge's verdict rests on (8 bit, 255 = in the mask)
objects.json             the object registry of a camera-judged or self-reset run (`vla-r1 objects register`)
run_config.json          what the run that wrote the log ran with (`vla-r1 trials`; optional); every
                         episode written while it is there names it with its SHA-256
episodes/.tmp-000002/    an episode being written; never listed in the index
.planning_outbox/        finished trials the planning node has not yet seen logged (`core.delivery.Spool`)
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
AFTER_COLOR_FILE = "after_color.png"
AFTER_DEPTH_FILE = "after_depth.png"
JUDGE_MASK_FILE = "judge_{}.png"
RUN_CONFIG_FILE = "run_config.json"
OBJECT_REGISTRY_FILE = "objects.json"  # the objects the camera judge and the self-reset know (core.object_registry)
# A recorded run (record:=true, --record): its bags, and each trial's span in its bag (trial_observers).
BAGS_DIR = "bags"
RECORDING_FILE = "recording.json"
PLANNING_SPOOL_DIR = ".planning_outbox"  # the planning node's finished trials not yet confirmed (graph.py)
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
EPISODE_NAME = re.compile(r"\A[0-9]{6,}\Z")  # \Z: "000001\n" is not a name

# Depth PNGs hold realsense2_camera's 16UC1 millimetres.
DEPTH_UNITS_M = 0.001


class EpisodeStoreError(RuntimeError):
    """The episode log cannot be written or read (disk full, unwritable directory, damaged index)."""


class EpisodeNameError(EpisodeStoreError):
    """An episode name (from an index line, a URL, a command line) that is not an episode folder
    directly inside the log: `../x`, `/etc`, `000001/../..`, a symlink out of `episodes/`."""


class EpisodeIndexPending(EpisodeStoreError):
    """The episode is safely on disk but its index line is not yet: the store appends it on its next
    write or open. Writing the trial again would log it twice."""


def episode_dir(root: str | Path, episode: object) -> Path:
    """The folder of episode `episode` of the log at `root`, resolved. Every reader opens episodes by name
    through here, and names come from files and requests that anyone may have written, so a name must
    be digits (`EPISODE_NAME`) and its folder, symlinks followed, must sit directly in the log's
    `episodes/`; anything else raises EpisodeNameError. The folder need not exist."""
    if not isinstance(episode, str) or not EPISODE_NAME.match(episode):
        raise EpisodeNameError(
            f"{episode!r} is not an episode name of the log {root} (expected digits such as 000001: a folder in its "
            f"{EPISODES_DIR}/)"
        )
    episodes = Path(root).resolve() / EPISODES_DIR
    folder = (episodes / episode).resolve()
    if folder.parent != episodes:
        raise EpisodeNameError(f"episode {episode!r} of {root} is a link to {folder}, outside the log")
    return folder
