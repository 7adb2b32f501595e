"""`vla-r1 report LOGDIR`: a self-contained HTML evaluation report of an episode log.

Per trial: the image the model saw with its box, numbered waypoints and reasoning drawn on it; a 3-D
plot of the plan and the executed end-effector path in the robot base frame; rewards and outcome.
Summary: success rate with its Wilson interval, success by target object and by instruction, reward
histograms, latency per stage. Pictures are inline PNGs (base64), so the file can be mailed around.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report is written on machines with no display
import matplotlib.pyplot as plt
import numpy as np

from vla_r1_ros.core.annotate import annotate
from vla_r1_ros.core.episodes import iter_episodes, load_color, write_text_atomic
from vla_r1_ros.core.trials import TrialOutcome, format_summary, summarize

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1200px; }
h1 { margin-bottom: 0.2rem; } .muted { color: #666; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
td, th { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }
.trial { display: grid; grid-template-columns: 420px 320px 1fr; gap: 12px; }
.trial { border-top: 1px solid #ccc; padding: 12px 0; }
.trial img, .charts img { max-width: 100%; }
.ok { color: #0a7d28; font-weight: bold; } .fail { color: #b3261e; font-weight: bold; }
pre { white-space: pre-wrap; font-size: 12px; background: #f6f6f6; padding: 6px; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
"""


def _png(figure_or_image: Any) -> str:
    """An <img> tag with the PNG inline."""
    buffer = io.BytesIO()
    if isinstance(figure_or_image, np.ndarray):
        plt.imsave(buffer, figure_or_image, format="png")
    else:
        figure_or_image.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(figure_or_image)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _path_plot(episode: dict[str, Any]) -> str:
    plan = episode.get("plan") or {}
    executed = np.asarray(episode.get("executed_ee_path") or [], dtype=float).reshape(-1, 3)
    figure = plt.figure(figsize=(3.6, 3.2))
    axes = figure.add_subplot(projection="3d")
    carry = np.asarray([p["position"] for p in plan.get("carry_waypoints", [])], dtype=float).reshape(-1, 3)
    if len(carry):
        axes.plot(*carry.T, "o--", color="tab:blue", label="planned carry path")
    for key, marker, colour in (("grasp_pose", "v", "tab:green"), ("place_pose", "s", "tab:orange")):
        if plan.get(key):
            axes.scatter(*np.asarray(plan[key]["position"], dtype=float), marker=marker, color=colour, s=40, label=key)
    if len(executed):
        axes.plot(*executed.T, color="tab:red", linewidth=1, label="executed end effector")
    axes.set_xlabel("x (m)")
    axes.set_ylabel("y (m)")
    axes.set_zlabel("z (m)")
    if axes.get_legend_handles_labels()[0]:  # a trial that failed before planning has nothing to plot
        axes.legend(fontsize=6, loc="upper left")
    axes.set_title("robot base frame", fontsize=8)
    return _png(figure)


def _trial_html(root: Path, entry: dict[str, Any], episode: dict[str, Any]) -> str:
    color = load_color(root, entry["episode"])
    parsed = episode["prediction"]["parsed"]
    reasoning = " / ".join(text for text in (parsed.get("reasoning") or {}).values() if text)
    caption = reasoning if parsed.get("valid") else f"INVALID ({parsed.get('error', '')})"
    picture = (
        _png(annotate(color, parsed.get("box_normalized"), parsed.get("waypoints_normalized"), caption))
        if color is not None
        else "<p>(no image logged)</p>"
    )
    outcome = episode["outcome"]
    verdict = (
        '<span class="ok">success</span>'
        if outcome["success"]
        else (f'<span class="fail">failed at {html.escape(outcome["failure_stage"])}</span>')
    )
    rewards = episode["rewards"]
    reward_rows = "".join(
        f"<tr><td>{key}</td><td>{'—' if rewards.get(key) is None else f'{rewards[key]:.3f}'}</td></tr>"
        for key in ("total", "format", "region", "trajectory")
    )
    timing_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.3f} s</td></tr>" for k, v in episode["timings"].items()
    )
    texts = "".join(
        f"<b>{html.escape(task)}</b><pre>{html.escape(text)}</pre>"
        for task, text in episode["prediction"]["raw_texts"].items()
    )
    return f"""
<div class="trial">
  <div>{picture}</div>
  <div>{_path_plot(episode)}</div>
  <div>
    <h3>#{html.escape(entry["episode"])} — {html.escape(episode["instruction"])}</h3>
    <p>{verdict} <span class="muted">{html.escape(outcome["message"])}</span></p>
    <table><tr><th>reward</th><th></th></tr>{reward_rows}</table>
    <table><tr><th>stage</th><th>time</th></tr>{timing_rows}</table>
    <p class="muted">reference: {html.escape(episode["references"]["source"])}
      {html.escape(episode["references"].get("note") or "")}</p>
    <details><summary>model output</summary>{texts}</details>
  </div>
</div>"""


def _bar_chart(title: str, counts: dict[str, tuple[int, int]]) -> str:
    """Success rate per key; counts: key -> (successes, trials)."""
    keys = sorted(counts)
    figure, axes = plt.subplots(figsize=(5, 0.35 * len(keys) + 1.2))
    rates = [counts[k][0] / counts[k][1] for k in keys]
    axes.barh(keys, rates, color="tab:green")
    for y, key in enumerate(keys):
        axes.text(min(rates[y], 0.85) + 0.02, y, f"{counts[key][0]}/{counts[key][1]}", va="center", fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_xlabel("success rate")
    axes.set_title(title)
    axes.tick_params(axis="y", labelsize=7)
    return _png(figure)


def _reward_histograms(episodes: list[dict[str, Any]]) -> str:
    keys = ("total", "format", "region", "trajectory")
    figure, axes = plt.subplots(1, len(keys), figsize=(10, 2.2))
    for ax, key in zip(axes, keys, strict=True):
        values = [e["rewards"][key] for e in episodes if e["rewards"].get(key) is not None]
        ax.hist(values, bins=np.linspace(0, 1, 11), color="tab:blue")
        ax.set_title(f"{key} (n={len(values)})", fontsize=9)
        ax.set_xlim(0, 1)
    return _png(figure)


def _latency_chart(episodes: list[dict[str, Any]]) -> str:
    stages: dict[str, list[float]] = defaultdict(list)
    for episode in episodes:
        for stage, seconds in episode["timings"].items():
            stages[stage].append(seconds)
    names = list(stages)
    figure, axes = plt.subplots(figsize=(5, 0.35 * len(names) + 1.2))
    axes.barh(names, [np.mean(stages[n]) for n in names], xerr=[np.std(stages[n]) for n in names], color="tab:purple")
    axes.set_xlabel("seconds (mean ± sd)")
    axes.set_title("latency per stage")
    return _png(figure)


def outcomes_from_log(root: Path) -> list[TrialOutcome]:
    """Trial outcomes rebuilt from an episode log (a report for a log written by a lab's launch)."""
    return [
        TrialOutcome(
            index=i,
            seed=-1,
            instruction=e["instruction"],
            target=e["references"].get("target") or "",
            success=e["outcome"]["success"],
            failure_stage=e["outcome"]["failure_stage"],
            message=e["outcome"]["message"],
            episode_id=e["trial_id"],
            rewards={k: v for k, v in e["rewards"].items() if isinstance(v, float)},
            stage_seconds=e["timings"],
        )
        for i, (_entry, e) in enumerate(iter_episodes(root))
    ]


def write_report(root: str | Path, out: str | Path, summary: dict[str, Any] | None = None) -> Path:
    root, out = Path(root), Path(out)
    pairs = list(iter_episodes(root))
    episodes = [episode for _entry, episode in pairs]
    summary = summary or summarize(outcomes_from_log(root))
    by_target: dict[str, tuple[int, int]] = {}
    by_instruction: dict[str, tuple[int, int]] = {}
    for episode in episodes:
        ok = int(episode["outcome"]["success"])
        for table, key in (
            (by_target, episode["references"].get("target") or "unknown"),
            (by_instruction, episode["instruction"]),
        ):
            done, total = table.get(key, (0, 0))
            table[key] = (done + ok, total + 1)
    charts = ""
    if episodes:
        charts = (
            f'<div class="charts"><div>{_bar_chart("success by target object", by_target)}</div>'
            f"<div>{_bar_chart('success by instruction', by_instruction)}</div>"
            f"<div>{_latency_chart(episodes)}</div><div>{_reward_histograms(episodes)}</div></div>"
        )
    trials = "".join(_trial_html(root, entry, episode) for entry, episode in pairs)
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>VLA-R1 trials — {html.escape(root.name)}</title>
<style>{_STYLE}</style></head><body>
<h1>VLA-R1 trials</h1>
<p class="muted">{html.escape(str(root))} — {len(episodes)} episodes</p>
<pre>{html.escape(format_summary(summary))}</pre>
{charts}
<h2>Trials</h2>
{trials or "<p>No episodes logged.</p>"}
</body></html>
"""
    write_text_atomic(out, document)
    return out
