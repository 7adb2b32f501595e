"""The loop closed: an adapter made by `vla-r1 train-sft` goes into the inference node through
`vla-r1 trials --adapter` (the graph's `adapter:=` argument), the trials run end to end with the tiny
offline model, and every episode names the checkpoint and the adapter that produced its answer. An
adapter of another base model is refused before the graph starts.

Real processes and DDS as `make demo` runs them; the tiny model is random, so its answers fail to parse
and the arm does not move — what is under test is which weights answered, not how well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_grpo import write_sim_episodes

from vla_r1_ros.cli.main import main
from vla_r1_ros.core import dataset
from vla_r1_ros.core.episodes import EPISODE_FILE, episode_dir, read_index
from vla_r1_ros.policies.adapter import ADAPTER_CONFIG
from vla_r1_ros.training.loading import ADAPTER_DIR


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

    return build_tiny_vla_r1(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def sft_adapter(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    write_sim_episodes(root / "log")
    dataset.export_dataset(root / "log", root / "data")
    argv = ["train-sft", "--data", str(root / "data"), "--model", str(tiny_model), "--output", str(root / "run")]
    assert main([*argv, "--cpu-smoke"]) == 0
    return root / "run" / ADAPTER_DIR


def trials(out, *argv) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vla_r1_ros.cli.main", "trials", *argv, "--out", str(out), "--no-report"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ.copy())


@pytest.mark.slow  # ~45 s: the node graph and two tiny-model trials; the merge itself is tested below
def test_trials_with_an_sft_adapter_name_checkpoint_and_adapter(tiny_model, sft_adapter, tmp_path):
    out = tmp_path / "run"
    argv = ("--policy", "vla_r1", "--model", str(tiny_model), "--adapter", str(sft_adapter))
    result = trials(out, *argv, "--quantization", "none", "--n", "2", "--seed", "3")
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    lines = read_index(out)
    assert len(lines) == 2
    for line in lines:
        document = json.loads((episode_dir(out, line["episode"]) / EPISODE_FILE).read_text())
        assert document["prediction"]["model_id"] == f"vla_r1:{tiny_model}+adapter:{sft_adapter}"
    assert json.loads((out / "run_config.json").read_text())["arguments"]["adapter"] == str(sft_adapter)


def test_the_policy_answers_with_the_adapter_merged_into_the_checkpoint(tiny_model, sft_adapter):
    from peft import PeftModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vla_r1_ros.core.config import load_config
    from vla_r1_ros.policies.settings import TransformersSettings
    from vla_r1_ros.policies.vla_r1 import VlaR1Policy

    settings = TransformersSettings.from_config(
        load_config("model"), model=str(tiny_model), adapter=str(sft_adapter), quantization="none", device="cpu"
    )
    loaded = VlaR1Policy(settings).components().model.state_dict()

    def base():
        return Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model, dtype=loaded["lm_head.weight"].dtype)

    expected = PeftModel.from_pretrained(base(), sft_adapter).merge_and_unload().state_dict()  # merges in place
    original = base().state_dict()
    assert set(loaded) == set(expected)
    changed = [key for key in loaded if not loaded[key].equal(original[key])]
    assert changed and all(".language_model." in key for key in changed)  # the adapter's modules only
    assert all(loaded[key].equal(expected[key]) for key in loaded)


def test_an_adapter_of_another_model_stops_trials_before_the_graph_starts(tiny_model, sft_adapter, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((sft_adapter / ADAPTER_CONFIG).read_text())
    (other / ADAPTER_CONFIG).write_text(json.dumps(config | {"base_model_name_or_path": "Qwen/Qwen2.5-VL-3B"}))
    result = trials(tmp_path / "run", "--policy", "vla_r1", "--model", str(tiny_model), "--adapter", str(other))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"vla-r1: --adapter: adapter {other} was trained on Qwen/Qwen2.5-VL-3B, not on {tiny_model} ({tiny_model})"
    ]
    assert "started" not in result.stdout and not (tmp_path / "run" / "logs").exists()
