"""SFT and GRPO under `accelerate launch` with two processes on this CPU: DDP over gloo (torchrun starts
the ranks; on a machine without CUDA accelerate picks its MULTI_CPU mode), each rank training its shard
of the export, the main process gathering the rows every rank trained on or scored into `ranks.json`
and saving the adapter.

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
from collections import Counter
from pathlib import Path

import pytest
from test_grpo import write_sim_episodes

from vla_r1_ros.core import dataset
from vla_r1_ros.training import grpo, ranks, sft
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


@pytest.fixture(scope="module")
def export_and_model(tmp_path_factory):
    from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

    root = tmp_path_factory.mktemp("ranks")
    write_sim_episodes(root / "log")
    dataset.export_dataset(root / "log", root / "data")
    return root / "data", build_tiny_vla_r1(root / "tiny")


def launch_two_ranks(command: str, data: Path, model: Path, output: Path, *extra: str) -> dict:
    """`accelerate launch` of `vla-r1 COMMAND --cpu-smoke` on two CPU processes; its ranks.json."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    argv = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    argv += ["--main_process_port", str(free_port()), "-m", "vla_r1_ros.cli.main", command]
    argv += ["--data", str(data), "--model", str(model), "--output", str(output), "--cpu-smoke", *extra]
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=output.parent)
    assert result.returncode == 0, result.stderr[-4000:]
    adapter = output / ADAPTER_DIR
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((output / "log_history.json").read_text())[-1]["step"] == 2
    report = json.loads((output / ranks.RANKS_FILE).read_text())
    assert report["world_size"] == 2 and [rank["rank"] for rank in report["ranks"]] == [0, 1]
    assert all(rank["steps"] == 2 for rank in report["ranks"])
    return report


def test_two_grpo_ranks_each_score_their_shard_and_rank_zero_writes_the_adapter(export_and_model, tmp_path):
    data, model = export_and_model
    rows = dataset.load_hf_dataset(data)
    output = tmp_path / "grpo"
    report = launch_two_ranks("train-grpo", data, model, output, "--max-completion-length", "8")
    assert json.loads((output / grpo.SETTINGS_FILE).read_text())["world_size"] == 2
    shards = [set(rank["rows"]) for rank in report["ranks"]]
    # Each rank scored completions of its own rows (2 steps x 1 prompt x group of 2 each), the two
    # shards disjoint and together the whole export.
    assert all(sum(rank["rows"].values()) == 4 for rank in report["ranks"])
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(ranks.row_names(rows["episode"], rows["task"]))


@pytest.mark.slow  # ~25 s; the same launch and ranks.json as train-grpo's two-rank test above, which runs by default
def test_two_sft_ranks_each_train_their_shard_and_rank_zero_writes_the_adapter(export_and_model, tmp_path):
    data, model = export_and_model
    rows = dataset.load_hf_dataset(data)
    output = tmp_path / "sft"
    report = launch_two_ranks("train-sft", data, model, output)
    assert json.loads((output / sft.SETTINGS_FILE).read_text())["world_size"] == 2
    # 4 rows, batch 2 per rank: each step is one epoch, the two ranks' batches split it. So each rank
    # trained on 2 x 2 rows, and over both ranks every row twice (once per epoch), none left out.
    assert all(sum(rank["rows"].values()) == 4 for rank in report["ranks"])
    seen = Counter(report["ranks"][0]["rows"]) + Counter(report["ranks"][1]["rows"])
    assert seen == dict.fromkeys(ranks.row_names(rows["episode"], rows["task"]), 2)
