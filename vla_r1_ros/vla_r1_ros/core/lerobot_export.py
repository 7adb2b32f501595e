"""Episode log -> the plain intermediate that `lerobot_writer` turns into a LeRobotDataset v3.0.

No lerobot here: lerobot 0.4.4 cannot share the project's environment (`lerobot_writer`), so this
module writes what its writer script needs as plain files, `manifest.json` and one `.npz` per
episode, and everything the dataset says is decided here (tested in the default suite).

What a frame is. An episode logs one camera frame set (the colour and aligned depth the model saw),
the validated plan's commanded joint path (`plan.joint_trajectory`: arm joint positions, no timing)
and the executed TCP points; it logs no joint states. So one dataset episode per logged trial, one
frame per step of its commanded joint path: `observation.state` = commanded point t (t = 0 is the
arm's measured start, where every validated plan begins), `action` = commanded point t + 1 (the
commanded target). A position-controlled arm that tracks its path (the executors refuse a trial whose
tracking error exceeds the limit) is at point t when it is sent point t + 1; measured joint states
between the points are not logged. Timestamps are frame_index / fps (nominal, `config/dataset.yaml`).
Colour and depth are the trial's one frame set on every frame of the episode (a still video).

A trial refused before the arm moved (parse, lift, safety, collision, ik) has no commanded path: it
becomes one frame at the arm's start, which only a simulated run knows (the workcell's configured
`robot.home_joints` from the run's `run_config.json`; `vla_r1.commanded` is false on that frame). Of a real
arm it is left out and counted (`skipped`), with a warning.

Outcome columns as `lerobot_eval` writes them: `next.done` true on the last frame, `next.success` and
`next.reward` (1.0) on the last frame of a JUDGED success only (`core.outcomes.episode_outcome`; operator
labels override the logged outcome). A trial nobody judged is never a success: it is written with
`vla_r1.judged` false, so a success rate over the dataset must filter on it (`not_judged` in the
summary counts them). The VLA-R1 answers (raw text per task) and rewards are extra columns.

Depth: lerobot 0.4.4 has no depth feature (its images and videos are 8-bit, 3-channel; depth maps came
after 0.4.4, in releases that need a newer Python), so `observation.images.depth` is a grey video of the
depth quantised to 8 bits over [near_m, far_m]: grey = 1 + 254 (d - near) / (far - near), clipped,
0 = no depth (`depth_to_grey`, inverse `grey_to_depth_m`). The encoding is in `meta/vla_r1.json`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_r1_ros.core import episodes, prompts
from vla_r1_ros.core.labels import labelled_rewards
from vla_r1_ros.core.outcomes import BEFORE_MOTION, episode_outcome

INTERMEDIATE_FORMAT = "vla_r1_lerobot_intermediate"
INTERMEDIATE_VERSION = 1
MANIFEST_FILE = "manifest.json"
META_SIDECAR = "vla_r1.json"  # written by the writer into the dataset's meta/: this module's conventions
RUN_CONFIG_FILE = "run_config.json"

COLOR_KEY = "observation.images.color"
DEPTH_KEY = "observation.images.depth"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
REWARD_KEYS = ("format", "region", "trajectory", "total")
SIM_EXECUTOR = "sim"


class LeRobotExportError(RuntimeError):
    """The log cannot become a LeRobot dataset (nothing to export, inconsistent joints or image sizes)."""


@dataclass(frozen=True)
class LeRobotSettings:
    """`config/dataset.yaml`'s `lerobot:` section."""

    fps: int
    robot_type: str
    depth_near_m: float
    depth_far_m: float

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> LeRobotSettings:
        settings = cls(
            fps=int(section["fps"]),
            robot_type=str(section["robot_type"]),
            depth_near_m=float(section["depth_near_m"]),
            depth_far_m=float(section["depth_far_m"]),
        )
        if settings.fps <= 0 or not 0 <= settings.depth_near_m < settings.depth_far_m:
            raise LeRobotExportError(f"config/dataset.yaml lerobot: needs fps > 0 and 0 <= near < far: {section}")
        return settings


@dataclass
class LeRobotExportSummary:
    logdir: str
    out: str
    episodes: int = 0
    frames: int = 0
    judged: int = 0
    successes: int = 0  # judged successes
    not_judged: int = 0
    refused_before_motion: int = 0  # written as one frame at the start configuration
    skipped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "logdir": self.logdir,
            "out": self.out,
            "format": "lerobot",
            "episodes": self.episodes,
            "frames": self.frames,
            "judged": self.judged,
            "successes": self.successes,
            "not_judged": self.not_judged,
            "refused_before_motion": self.refused_before_motion,
            "skipped": dict(self.skipped),
            "warnings": list(self.warnings),
        }


def depth_to_grey(depth_mm: np.ndarray, units_m: float, near_m: float, far_m: float) -> np.ndarray:
    """Aligned depth (uint16, `units_m` per unit, 0 = none) -> (H, W, 3) uint8 grey for the depth video."""
    metres = depth_mm.astype(np.float64) * units_m
    grey = np.clip(np.rint(1 + 254 * (metres - near_m) / (far_m - near_m)), 1, 255).astype(np.uint8)
    grey[depth_mm == 0] = 0
    return np.repeat(grey[:, :, None], 3, axis=2)


def grey_to_depth_m(grey: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """The inverse of `depth_to_grey` (one channel; NaN where grey is 0 = no depth)."""
    metres = near_m + (grey.astype(np.float64) - 1) * (far_m - near_m) / 254
    return np.where(grey == 0, np.nan, metres)


def features(joint_names: Sequence[str], height: int, width: int) -> dict[str, dict[str, Any]]:
    """The LeRobotDataset `features` of the export (lerobot's own keys first, then ours)."""
    image = {"dtype": "video", "shape": (height, width, 3), "names": ["height", "width", "channels"]}
    joints = {"dtype": "float32", "shape": (len(joint_names),), "names": list(joint_names)}
    scalar = {"dtype": "float32", "shape": (1,), "names": None}
    flag = {"dtype": "bool", "shape": (1,), "names": None}
    text = {"dtype": "string", "shape": (1,), "names": None}
    return {
        COLOR_KEY: image,
        DEPTH_KEY: dict(image),
        STATE_KEY: joints,
        ACTION_KEY: dict(joints),
        "next.reward": scalar,
        "next.success": flag,
        "next.done": dict(flag),
        "vla_r1.judged": dict(flag),
        "vla_r1.commanded": dict(flag),
        "vla_r1.outcome_source": text,
        "vla_r1.failure_stage": dict(text),
        "vla_r1.episode": dict(text),
        **{f"vla_r1.answer.{task}": dict(text) for task in prompts.TASKS},
        **{f"vla_r1.reward.{key}": dict(scalar) for key in REWARD_KEYS},
        "vla_r1.scored": dict(flag),
    }


def _simulated_home(logdir: Path) -> np.ndarray | None:
    """The arm's configured start of a simulated run (its run_config.json), or None (not simulated, or
    no run_config.json)."""
    try:
        run = json.loads((logdir / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
        executor = run["config"]["nodes"]["planning"]["ros__parameters"]["executor"]
        home = run["config"]["workcell"]["robot"]["home_joints"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return np.asarray(home, dtype=np.float32) if executor == SIM_EXECUTOR else None


def _commanded_path(document: Mapping[str, Any]) -> tuple[list[str], np.ndarray] | None:
    trajectory = document["plan"].get("joint_trajectory")
    if not trajectory or not trajectory.get("positions"):
        return None
    return list(trajectory["joint_names"]), np.asarray(trajectory["positions"], dtype=np.float32)


def _episode_arrays(
    document: Mapping[str, Any],
    labels: Mapping[str, Any],
    path: np.ndarray,
    commanded: bool,
    color: np.ndarray,
    depth_grey: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-frame arrays of one episode (first axis = frame), as the writer feeds them to `add_frame`."""
    n = max(len(path) - 1, 1)
    outcome = episode_outcome(document, labels)
    judged, success = outcome.judged, outcome.success  # a success only when judged
    last = np.arange(n) == n - 1
    rewards_ = labelled_rewards(document, labels)
    scored = rewards_["total"] is not None
    texts = document["prediction"].get("raw_texts", {})

    def column(value: Any, dtype: Any) -> np.ndarray:
        return np.full((n, 1), value, dtype=dtype)

    return {
        COLOR_KEY: color,  # one image: the writer repeats it on every frame (`still` in the manifest)
        DEPTH_KEY: depth_grey,
        STATE_KEY: path[:n],
        ACTION_KEY: path[1 : n + 1] if len(path) > 1 else path[:1],
        "next.reward": (last & success).astype(np.float32)[:, None],
        "next.success": (last & success)[:, None],
        "next.done": last[:, None],
        "vla_r1.judged": column(judged, bool),
        "vla_r1.commanded": column(commanded, bool),
        "vla_r1.outcome_source": np.full(n, outcome.outcome_source),
        "vla_r1.failure_stage": np.full(n, outcome.failure_stage),
        "vla_r1.episode": np.full(n, str(document["episode"])),
        **{f"vla_r1.answer.{task}": np.full(n, str(texts.get(task, ""))) for task in prompts.TASKS},
        # Unscored (no reference) rewards are 0 with `vla_r1.scored` false: lerobot's stats cannot take NaN.
        **{f"vla_r1.reward.{key}": column(rewards_[key] or 0.0, np.float32) for key in REWARD_KEYS},
        "vla_r1.scored": column(scored, bool),
    }


def build_intermediate(
    logdir: str | Path, directory: str | Path, settings: LeRobotSettings, out: str | Path = ""
) -> LeRobotExportSummary:
    """Write `directory/manifest.json` and `directory/episode_NNNNNN.npz` for every exportable
    episode of the log (module doc); `out` is only named in the summary."""
    logdir, directory = Path(logdir), Path(directory)
    if not (logdir / episodes.INDEX_FILE).is_file():
        raise LeRobotExportError(f"{logdir} is not an episode log (no {episodes.INDEX_FILE})")
    summary = LeRobotExportSummary(str(logdir), str(out or directory))
    logged = list(episodes.iter_episodes(logdir))
    paths = [(entry, document, _commanded_path(document)) for entry, document in logged]
    names = {tuple(p[0]) for _, _, p in paths if p is not None}
    if not names:
        raise LeRobotExportError(f"no trial of {logdir} commanded the arm: no joints for observation.state/action")
    if len(names) > 1:
        raise LeRobotExportError(f"the trials of {logdir} command different joints: {sorted(names)}")
    joint_names = list(names.pop())
    home = _simulated_home(logdir)
    shape: tuple[int, ...] | None = None
    manifest_episodes = []
    directory.mkdir(parents=True, exist_ok=True)
    for entry, document, commanded in paths:
        episode = entry["episode"]
        labels = episodes.read_labels(logdir, episode) or {}
        if commanded is None:
            if home is None or document["outcome"]["failure_stage"] not in BEFORE_MOTION:
                summary.skipped["no commanded joint path (and no known start configuration)"] += 1
                summary.warnings.append(f"episode {episode} left out: it logged no commanded joint path")
                continue
            path, is_commanded = home[None, :], False
        else:
            path, is_commanded = commanded[1], True
        color = episodes.load_color(logdir, episode)
        if color is None:
            summary.skipped["colour image missing or unreadable"] += 1
            summary.warnings.append(f"episode {episode} left out: no readable {episodes.COLOR_FILE}")
            continue
        if shape is not None and color.shape != shape:
            summary.skipped["image size differs from the first episode's"] += 1
            summary.warnings.append(f"episode {episode} left out: colour {color.shape}, the dataset's {shape}")
            continue
        shape = color.shape
        depth = episodes.load_depth(logdir, episode)
        if depth is None or depth.shape != color.shape[:2]:
            depth = np.zeros(color.shape[:2], np.uint16)  # 0 = no depth, as in the log
        grey = depth_to_grey(
            depth,
            float(document.get("depth_units_m", episodes.DEPTH_UNITS_M)),
            settings.depth_near_m,
            settings.depth_far_m,
        )
        arrays = _episode_arrays(document, labels, path, is_commanded, color, grey)
        file = f"episode_{len(manifest_episodes):06d}.npz"
        np.savez(directory / file, **arrays)
        frames = len(arrays[STATE_KEY])
        judged = bool(arrays["vla_r1.judged"][0, 0])
        summary.episodes += 1
        summary.frames += frames
        summary.judged += judged
        summary.not_judged += not judged
        summary.successes += bool(arrays["next.success"][-1, 0])
        summary.refused_before_motion += not is_commanded
        manifest_episodes.append({"file": file, "task": document["instruction"], "frames": frames, "source": episode})
    if not manifest_episodes:
        raise LeRobotExportError(f"no episode of {logdir} can be exported (skipped: {dict(summary.skipped)})")
    height, width = shape[:2]
    manifest = {
        "format": INTERMEDIATE_FORMAT,
        "version": INTERMEDIATE_VERSION,
        "fps": settings.fps,
        "robot_type": settings.robot_type,
        "features": features(joint_names, height, width),
        "still": [COLOR_KEY, DEPTH_KEY],
        "episodes": manifest_episodes,
        "sidecar": {
            "source_log": str(logdir.resolve()),
            "frame": "one step of the trial's commanded joint path: observation.state = point t, action = point t+1",
            "timestamps": f"nominal: frame_index / {settings.fps}",
            "depth_encoding": {
                "key": DEPTH_KEY,
                "grey": "1 + 254 * (depth_m - near_m) / (far_m - near_m), clipped to 1..255; 0 = no depth",
                "near_m": settings.depth_near_m,
                "far_m": settings.depth_far_m,
            },
            "success": "next.success / next.reward only on a judged success; filter on vla_r1.judged",
            "summary": summary.to_json(),
        },
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return summary
