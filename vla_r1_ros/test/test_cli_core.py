"""`vla-r1 parse | reward | eval` through real invocations, and the rewards benchmark on a tiny budget."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vla_r1_ros.core.prompts import format_answer

# The console script installed next to this interpreter (the venv), else the one on PATH.
_BESIDE_PYTHON = Path(sys.executable).with_name("vla-r1")
VLA_R1 = str(_BESIDE_PYTHON) if _BESIDE_PYTHON.exists() else shutil.which("vla-r1")

BOX = format_answer("the handle", (0.5, 0.5, 0.2, 0.2))
PATH = format_answer("along the table", [(0.1, 0.1), (0.2, 0.1), (0.3, 0.2)])


def vla_r1(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    assert VLA_R1, "the vla-r1 console script is not installed"
    return subprocess.run([VLA_R1, *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_core_and_commands_do_not_import_rclpy():
    modules = [
        "core.prompts",
        "core.parsing",
        "core.rewards",
        "core.metrics",
        "cli.parse",
        "cli.reward",
        "cli.evaluate",
        "core.labels",
        "core.dataset",
        "cli.label",
    ]
    code = "".join(f"import vla_r1_ros.{name}\n" for name in modules) + "import sys\nassert 'rclpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_parse_ok_with_pixels():
    result = vla_r1("parse", "--task", "affordance", "--width", "640", "--height", "480", stdin=BOX)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "ok": True,
        "task": "affordance",
        "reasoning": "the handle",
        "box": {"x": 0.5, "y": 0.5, "width": 0.2, "height": 0.2},
        "box_px": [256.0, 192.0, 384.0, 288.0],
        "waypoints": None,
        "waypoints_px": None,
        "format_reward": 1,
        "error": None,
    }


def test_parse_failure_still_exits_zero():
    result = vla_r1("parse", "--task", "trajectory", stdin="<think>hmm</think> <output>[[0.1, 0.2]]</output>")
    assert result.returncode == 0
    parsed = json.loads(result.stdout)
    assert parsed["ok"] is False and parsed["reasoning"] == "hmm" and parsed["waypoints_px"] is None
    assert parsed["error"] == "trajectory needs at least 2 waypoints, got 1"


def test_parse_survives_bytes_that_are_not_utf8():
    assert VLA_R1
    result = subprocess.run(
        [VLA_R1, "parse", "--task", "trajectory"], input=b"\xff\xfe<output>\x80", capture_output=True, timeout=60
    )
    assert result.returncode == 0 and json.loads(result.stdout)["ok"] is False


@pytest.mark.parametrize(
    "args",
    [
        ("parse",),
        ("parse", "--task", "grasp"),
        ("parse", "--task", "affordance", "--width", "640"),
        ("parse", "--task", "affordance", "--width", "0", "--height", "480"),
        ("eval",),
        ("eval", "/nonexistent/predictions.jsonl"),
        ("no-such-command",),
    ],
)
def test_usage_errors_exit_two(args):
    result = vla_r1(*args, stdin=BOX)
    assert result.returncode == 2
    assert result.stdout == ""


def test_reward_lines_and_a_bad_line():
    lines = [
        json.dumps({"task": "affordance", "completion": BOX, "ground_truth": BOX}),
        "this is not json",
        "",
        json.dumps({"task": "trajectory", "completion": BOX, "ground_truth": PATH}),
        json.dumps({"task": "trajectory", "completion": PATH}),
        json.dumps({"task": "affordance", "completion": BOX, "ground_truth": PATH}),
        json.dumps({"task": "trajectory", "completion": PATH, "ground_truth": PATH}),
    ]
    result = vla_r1("reward", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0] == {"score": 1.0, "format": 1, "task_score": 1.0}
    assert out[1]["line"] == 2 and out[1]["error"].startswith("not JSON")
    assert out[2] == {"score": pytest.approx(0.1), "format": 1, "task_score": 0.0}  # kind mismatch
    assert out[3] == {"error": "missing field(s): ground_truth", "line": 5}
    assert out[4]["line"] == 6 and "ground truth output is not a box" in out[4]["error"]
    assert out[5]["score"] == pytest.approx(1.0)
    assert len(out) == 6  # the blank line gives nothing


def test_eval_summary_and_per_sample(tmp_path):
    samples = [
        {"id": "a", "task": "affordance", "prediction": BOX, "reference": BOX},
        {"id": "b", "task": "trajectory", "prediction": PATH, "reference": PATH},
        {"id": "c", "task": "trajectory", "prediction": "no idea", "reference": PATH},
    ]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("\n".join(json.dumps(s) for s in samples) + "\nnot json\n")
    per_sample = tmp_path / "scores.jsonl"
    result = vla_r1("eval", str(predictions), "--per-sample", str(per_sample))
    assert result.returncode == 0, result.stderr
    assert "line 4 skipped" in result.stderr
    assert json.loads(result.stdout) == {
        "affordance": {"n": 1, "iou": 100.0},
        "trajectory": {"n": 2, "dfd": 0.0, "hd": 0.0, "rmse": 0.0, "avg": 0.0},
        "format_rate": pytest.approx(2 / 3),
        "parse_failures": 1,
    }
    records = [json.loads(line) for line in per_sample.read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "b", "c"]
    assert records[2]["ok"] is False and records[2]["error"] == "no <output> tag"


def test_rewards_bench_runs_and_writes_json(tmp_path, capsys):
    from vla_r1_ros.bench import rewards as bench

    parser = argparse.ArgumentParser()
    bench.configure(parser)
    out = tmp_path / "bench.json"
    assert bench.run(parser.parse_args(["--min-time", "0.001", "--json", str(out)])) == 0
    results = json.loads(out.read_text())["results"]
    trajectory = [row for row in results if row["name"] == "trajectory_reward"]
    assert [row["length"] for row in trajectory] == [4, 50, 200]
    assert all(row["samples_per_s"] > 0 and row["speedup"] > 0 for row in trajectory)
    assert "trajectory_reward" in capsys.readouterr().out
