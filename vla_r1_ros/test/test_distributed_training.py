"""GRPO under `accelerate launch` with two processes on this CPU: DDP over gloo (torchrun starts the
ranks; on a machine without CUDA accelerate picks its MULTI_CPU mode), each rank training its shard of
the export, the main process gathering what every rank scored into `ranks.json` and saving the adapter.

`--multi_gpu` is the launcher that starts two processes here: accelerate's `--cpu --num_processes 2`
starts one process unless MPI (`--mpirun_hostfile`) is there (docs/episodes.md says so). The port is
a free one, not torchrun's fixed default, since other test runs may share the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from test_grpo import write_sim_episodes

from vla_r1_ros.core import dataset
from vla_r1_ros.training import grpo
from vla_r1_ros.training.loading import ADAPTER_DIR

CONFIG = Path(__file__).resolve().parents[1] / "config" / "accelerate"


def test_the_shipped_deepspeed_configs_are_accelerate_configs_of_zero_2_and_3():
    """GPU-only (DeepSpeed is not installed here): accelerate's own loader reads them."""
    from accelerate.commands.config.config_args import load_config_from_file

    for stage in (2, 3):
        config = load_config_from_file(str(CONFIG / f"deepspeed_zero{stage}.yaml"))
        assert config.distributed_type == "DEEPSPEED" and config.deepspeed_config["zero_stage"] == stage
        accumulation = config.deepspeed_config["gradient_accumulation_steps"]
        assert accumulation == grpo.GrpoSettings("d", "m", "o").gradient_accumulation_steps


def test_vllm_rollouts_without_vllm_are_refused_before_anything_loads(tmp_path, capsys):
    from vla_r1_ros.cli.main import main

    output = tmp_path / "grpo"
    argv = ["train-grpo", "--data", str(tmp_path), "--model", str(tmp_path), "--output", str(output)]
    assert main([*argv, "--vllm-mode", "server"]) == 1
    assert capsys.readouterr().err.strip() == (
        "vla-r1 train-grpo: vllm_mode server needs the vllm package (pip install vllm, on a CUDA machine)"
    )
    assert not output.exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_ranks_each_train_their_shard_and_rank_zero_writes_the_adapter(tmp_path):
    from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

    write_sim_episodes(tmp_path / "log")
    dataset.export_dataset(tmp_path / "log", tmp_path / "data")
    rows = dataset.load_hf_dataset(tmp_path / "data")
    model = build_tiny_vla_r1(tmp_path / "tiny")
    output = tmp_path / "grpo"
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--main_process_port", str(free_port()), "-m", "vla_r1_ros.cli.main", "train-grpo"]
    command += ["--data", str(tmp_path / "data"), "--model", str(model), "--output", str(output), "--cpu-smoke"]
    command += ["--max-completion-length", "8"]
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    report = json.loads((output / grpo.RANKS_FILE).read_text())
    assert report["world_size"] == 2 and [rank["rank"] for rank in report["ranks"]] == [0, 1]
    assert json.loads((output / grpo.SETTINGS_FILE).read_text())["world_size"] == 2
    shards = [set(rank["rows_scored"]) for rank in report["ranks"]]
    assert all(rank["steps"] == 2 for rank in report["ranks"])
    # Each rank scored completions of its own rows (2 steps x 1 prompt x group of 2 each), the two
    # shards disjoint and together the whole export.
    assert all(sum(rank["rows_scored"].values()) == 4 for rank in report["ranks"])
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == {f"{e}/{t}" for e, t in zip(rows["episode"], rows["task"], strict=True)}
    adapter = output / ADAPTER_DIR
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    history = json.loads((output / grpo.LOG_HISTORY).read_text())
    assert history[-1]["step"] == 2
