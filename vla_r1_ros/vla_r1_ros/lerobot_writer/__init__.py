"""lerobot's writer in its own environment: created once, reused, as pipx / uv tools do.

lerobot 0.4.4 (the last release for Python 3.11) pins torch<2.11, torchvision<0.26, datasets<5 and
huggingface-hub<0.36, and the project's venv has torch 2.13 and transformers 5 (huggingface-hub 1.x):
the two cannot share a venv. So `vla-r1 export-dataset --format lerobot` writes a plain intermediate
with the project's code (`core.lerobot_export`) and runs `write_dataset.py` with the Python of a venv
that holds exactly `requirements.txt` (beside this file). That venv lives in
`$VLA_R1_LEROBOT_ENV`, else `${XDG_CACHE_HOME:-~/.cache}/vla_r1_ros/lerobot-<version>-<hash>`, keyed by
the requirements' content: a changed pin makes a new one. It is built in a temporary folder and
renamed into place when pip has finished, so an interrupted build is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
WRITER_SCRIPT = HERE / "write_dataset.py"
ENV_VARIABLE = "VLA_R1_LEROBOT_ENV"
READY_FILE = ".vla_r1_ready"  # holds the requirements' hash once pip has installed them


class WriterEnvironmentError(RuntimeError):
    """The isolated lerobot environment cannot be built, or its writer failed."""


def requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]


def lerobot_version() -> str:
    match = re.search(r"^lerobot==(\S+)", REQUIREMENTS.read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise WriterEnvironmentError(f"{REQUIREMENTS} pins no lerobot version (lerobot==X)")
    return match.group(1)


def environment_dir() -> Path:
    override = os.environ.get(ENV_VARIABLE)
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "vla_r1_ros" / f"lerobot-{lerobot_version()}-{requirements_hash()}"


def environment_python(directory: Path) -> Path:
    return directory / "bin" / "python"


def is_ready(directory: Path) -> bool:
    try:
        return (directory / READY_FILE).read_text(encoding="utf-8").strip() == requirements_hash()
    except OSError:
        return False


def _run(command: list[str], what: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-5:])
        raise WriterEnvironmentError(f"{what} failed (exit {completed.returncode}):\n{tail}")


def ensure_environment(say: Callable[[str], None]) -> Path:
    """The Python of the isolated lerobot environment, built first when it is missing (minutes; `say`
    tells what happens, as every reuse does too)."""
    directory = environment_dir()
    if is_ready(directory):
        say(f"using lerobot {lerobot_version()} from its isolated environment {directory}")
        return environment_python(directory)
    say(
        f"creating an isolated environment for lerobot {lerobot_version()} (it cannot share this venv: it pins "
        f"torch<2.11) in {directory}; once, a few minutes, ~8 GB"
    )
    building = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        _run([sys._base_executable, "-m", "venv", str(building)], f"creating the venv {building}")
        _run(
            [str(environment_python(building)), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
            f"pip install -r {REQUIREMENTS} into {building}",
        )
        (building / READY_FILE).write_text(requirements_hash() + "\n", encoding="utf-8")
        shutil.rmtree(directory, ignore_errors=True)  # an incomplete or stale one of the same key
        building.rename(directory)
    except (OSError, WriterEnvironmentError):
        shutil.rmtree(building, ignore_errors=True)
        raise
    say(f"isolated lerobot environment ready: {directory}")
    return environment_python(directory)


def _writer(python: Path, arguments: list[str], what: str) -> dict[str, Any]:
    completed = subprocess.run([str(python), str(WRITER_SCRIPT), *arguments], capture_output=True, text=True)
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-8:])
        raise WriterEnvironmentError(f"lerobot's writer failed to {what} (exit {completed.returncode}):\n{tail}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def write_dataset(python: Path, intermediate: Path, out: Path, repo_id: str) -> dict[str, Any]:
    """Run lerobot's LeRobotDataset.create / add_frame / save_episode / finalize on `intermediate`."""
    return _writer(python, [str(intermediate), str(out), repo_id], f"write {out}")


def check_dataset(python: Path, out: Path, repo_id: str) -> dict[str, Any]:
    """Load `out` with lerobot's LeRobotDataset: version, counts, the first and last frame."""
    return _writer(python, ["--check", str(out), repo_id], f"load {out}")


def export_lerobot(
    logdir: Path, out: Path, settings: Any, *, overwrite: bool, say: Callable[[str], None], repo_id: str = ""
) -> dict[str, Any]:
    """`vla-r1 export-dataset LOG OUT --format lerobot`: the log's intermediate (`core.lerobot_export`),
    lerobot's writer in its environment into a folder beside OUT, renamed to OUT when it has finished
    (an existing OUT is replaced only with `overwrite`, and only then). `export.json` in OUT's `meta/`
    is the summary returned."""
    from vla_r1_ros.core.lerobot_export import LeRobotExportError, build_intermediate

    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise LeRobotExportError(f"{out} exists and is not empty (pass --overwrite to replace it)")
    repo_id = repo_id or f"vla_r1_ros/{out.resolve().name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".vla_r1_lerobot-", dir=out.parent) as scratch:
        scratch = Path(scratch)
        summary = build_intermediate(logdir, scratch / "intermediate", settings, out)
        python = ensure_environment(say)
        written = write_dataset(python, scratch / "intermediate", scratch / "dataset", repo_id)
        if (written["episodes"], written["frames"]) != (summary.episodes, summary.frames):
            raise WriterEnvironmentError(f"lerobot wrote {written}, expected {summary.episodes} episodes")
        result = summary.to_json() | {"repo_id": repo_id, "lerobot": lerobot_version()}
        (scratch / "dataset" / "meta" / "export.json").write_text(json.dumps(result, indent=2) + "\n")
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        (scratch / "dataset").rename(out)
    return result
