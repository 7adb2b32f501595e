"""The episode store: one folder per finished trial plus an append-only JSONL index, written atomically.

Modules, one concern each: `layout` (names, schema, errors), `durable` (fsynced writes and atomic
replaces), `record` (`TrialLog`, `CameraFrame`), `references` (reference answers, rewards), `document`
(episode.json and index lines), `reading` (index, episodes, images, labels), `store` (`EpisodeStore`,
the one writer: atomic, crash-recovering, idempotent by trial id). This package exports their public
names, so callers import from `vla_r1_ros.core.episodes`.

Why JSONL and not SQLite: an episode is a folder of files anyway, so the index is only a list of
finished folders. Appending one line with one `write` + `fsync` is the whole transaction; the file is
greppable, diffable and readable by `datasets`/pandas while the logger appends; a reader never needs a
lock, a journal or a driver. A torn last line (power cut during the append) is detectable (no newline
or not JSON) and repairable from the episode's own folder, which is the source of truth.
"""

from vla_r1_ros.core.episodes.document import episode_document, index_entry, trial_from_document
from vla_r1_ros.core.episodes.durable import write_bytes_atomic, write_json_atomic, write_text_atomic
from vla_r1_ros.core.episodes.layout import (
    COLOR_FILE,
    DEPTH_FILE,
    DEPTH_UNITS_M,
    EPISODE_FILE,
    EPISODES_DIR,
    INDEX_FILE,
    LABELS_FILE,
    LABELS_SCHEMA_VERSION,
    RECORDING_FILE,
    RUN_CONFIG_FILE,
    SCHEMA_VERSION,
    EpisodeIndexPending,
    EpisodeNameError,
    EpisodeStoreError,
    episode_dir,
)
from vla_r1_ros.core.episodes.reading import (
    iter_episodes,
    load_color,
    load_depth,
    load_episode,
    read_index,
    read_labels,
    write_labels,
)
from vla_r1_ros.core.episodes.record import CameraFrame, CameraJudgement, SimulatorVerdict, TrialLog
from vla_r1_ros.core.episodes.references import (
    References,
    ReferenceSource,
    episode_rewards,
    select_references,
)
from vla_r1_ros.core.episodes.store import EpisodeStore

__all__ = [
    "COLOR_FILE",
    "DEPTH_FILE",
    "DEPTH_UNITS_M",
    "EPISODES_DIR",
    "EPISODE_FILE",
    "INDEX_FILE",
    "LABELS_FILE",
    "LABELS_SCHEMA_VERSION",
    "RECORDING_FILE",
    "RUN_CONFIG_FILE",
    "SCHEMA_VERSION",
    "CameraFrame",
    "CameraJudgement",
    "EpisodeIndexPending",
    "EpisodeNameError",
    "EpisodeStore",
    "EpisodeStoreError",
    "ReferenceSource",
    "References",
    "SimulatorVerdict",
    "TrialLog",
    "episode_dir",
    "episode_document",
    "episode_rewards",
    "index_entry",
    "iter_episodes",
    "load_color",
    "load_depth",
    "load_episode",
    "read_index",
    "read_labels",
    "select_references",
    "trial_from_document",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_labels",
    "write_text_atomic",
]
