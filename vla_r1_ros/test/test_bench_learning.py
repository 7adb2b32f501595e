"""`vla-r1 bench learning --quick`: the whole loop (simulator layouts split by layout, SFT, GRPO from the
SFT adapter, held-out evaluation through the inference loader) in a few tiny steps. The shape of the
JSON and that its numbers are real rewards are checked here; whether it learns is the benchmark's
claim, with its figures in docs/episodes.md."""

from __future__ import annotations

import json

import pytest

from vla_r1_ros.bench import learning
from vla_r1_ros.cli.main import main
from vla_r1_ros.core import rewards
from vla_r1_ros.core.labels import outcomes_by_checkpoint
from vla_r1_ros.core.trials import compare_checkpoints

# ~45 s of training and decoding that checks a benchmark's plumbing (make test-slow): the training itself is
# covered by test_sft.py / test_grpo.py, the held-out log's comparison by test_report_checkpoints.py.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "learning"
    assert main(["bench", "learning", "--quick", "--out", str(out)]) == 0
    return out, json.loads((out / learning.RESULT_FILE).read_text())


def test_the_json_holds_held_out_rewards_of_each_stage_over_two_seeds(quick_run):
    out, result = quick_run
    assert result["seeds"] == [0, 1] and [run["seed"] for run in result["per_seed"]] == [0, 1]
    assert set(result["held_out"]) == set(learning.STAGES) == set(result["spread"])
    for stage in learning.STAGES:
        means = result["held_out"][stage]
        assert set(means) == set(learning.REWARD_KEYS)
        assert all(0.0 <= value <= 1.0 for value in means.values())
        for key in learning.REWARD_KEYS:
            spread = result["spread"][stage][key]
            assert spread["min"] <= means[key] <= spread["max"] and spread["std"] >= 0.0
    # The total is the reference's weighting of the task and format scores, for every seed and stage.
    for run in result["per_seed"]:
        for scores in run["held_out"].values():
            task = (scores["region"] + scores["trajectory"]) / 2
            assert scores["total"] == pytest.approx(
                rewards.TASK_WEIGHT * task + rewards.FORMAT_WEIGHT * scores["format"]
            )
    assert set(result["checks"]) == {"base_below_sft", "sft_below_grpo", "sft_format_at_least_0.9"}
    assert (out / learning.FIGURE_FILE).read_bytes().startswith(b"\x89PNG")


def test_layouts_are_split_and_each_held_out_log_names_its_three_models(quick_run):
    _out, result = quick_run
    layouts = result["layouts"]
    assert layouts["train"] and layouts["held_out"] and not set(layouts["train"]) & set(layouts["held_out"])
    for run in result["per_seed"]:
        rows = compare_checkpoints(outcomes_by_checkpoint([run["held_out_log"]]))
        adapters = [row["adapter"] for row in rows]
        # base (no adapter), the SFT checkpoint(s) and final adapter, then GRPO's: one run each.
        assert adapters[0] == "" and adapters[-2].endswith("sft/adapter") and adapters[-1].endswith("grpo/adapter")
        assert all(row["trials"] == result["records"]["held_out_queries"] for row in rows)
        final = {"base": rows[0], "sft": rows[-2], "grpo": rows[-1]}
        for stage, row in final.items():
            assert row["mean_rewards"] == pytest.approx(run["held_out"][stage])
        assert [point["step"] for point in run["sft"]["held_out_total"]] == [0, 1, 2]
        assert [point["step"] for point in run["grpo"]["train_reward"]] == [1, 2]
