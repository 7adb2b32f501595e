"""Intermediate (`core.lerobot_export`) -> LeRobotDataset v3.0, with lerobot's own writer.

Runs in the isolated lerobot environment (`vla_r1_ros.lerobot_writer`), not in the project's: it
imports lerobot, numpy and the standard library only, never vla_r1_ros.

    python write_dataset.py INTERMEDIATE OUT REPO_ID          # write
    python write_dataset.py --check OUT REPO_ID               # load back, print counts as JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

MANIFEST_FILE = "manifest.json"
SIDECAR_FILE = "vla_r1.json"


def _value(array: np.ndarray, dtype: str):
    """One frame's value as `add_frame` validates it: a str for strings, else the numpy array."""
    return str(array) if dtype == "string" else array


def write(intermediate: Path, out: Path, repo_id: str) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    manifest = json.loads((intermediate / MANIFEST_FILE).read_text(encoding="utf-8"))
    features = {key: {**ft, "shape": tuple(ft["shape"])} for key, ft in manifest["features"].items()}
    dataset = LeRobotDataset.create(
        repo_id, manifest["fps"], features, robot_type=manifest["robot_type"], root=out, use_videos=True
    )
    still = set(manifest["still"])
    for episode in manifest["episodes"]:
        with np.load(intermediate / episode["file"]) as arrays:
            columns = {key: arrays[key] for key in features}
        for t in range(episode["frames"]):
            frame = {
                key: columns[key] if key in still else _value(columns[key][t], ft["dtype"])
                for key, ft in features.items()
            }
            dataset.add_frame(frame | {"task": episode["task"]})
        dataset.save_episode()
    dataset.finalize()
    sidecar = manifest["sidecar"] | {"episodes": [episode["source"] for episode in manifest["episodes"]]}
    (out / "meta" / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return {"episodes": dataset.meta.total_episodes, "frames": dataset.meta.total_frames}


def check(out: Path, repo_id: str) -> dict:
    """Load the dataset back with `LeRobotDataset` and describe it (for tests and `--check`)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset(repo_id, root=out, video_backend="pyav")
    info = json.loads((out / "meta" / "info.json").read_text(encoding="utf-8"))
    frames = []
    for index in (0, len(dataset) - 1):
        item = dataset[index]
        frames.append(
            {
                key: (value.tolist() if hasattr(value, "tolist") else value)
                for key, value in item.items()
                if not key.startswith("observation.images")
            }
            | {key: list(item[key].shape) for key in item if key.startswith("observation.images")}
            | {f"{key}.mean": float(item[key].float().mean()) for key in item if key.startswith("observation.images")}
        )
    return {
        "codebase_version": info["codebase_version"],
        "episodes": dataset.num_episodes,
        "frames": dataset.num_frames,
        "episode_lengths": [int(length) for length in dataset.meta.episodes["length"]],
        "tasks": list(dataset.meta.tasks.index),
        "features": sorted(dataset.features),
        "first_and_last_frame": frames,
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        print(json.dumps(check(Path(argv[1]), argv[2])))
    else:
        print(json.dumps(write(Path(argv[0]), Path(argv[1]), argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
