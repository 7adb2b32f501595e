"""`vla-r1 report LOG [LOG …]`: a self-contained HTML evaluation report of an episode log.

Per trial: the image the model saw with its box, numbered waypoints and reasoning drawn on it; a 3-D
plot of the plan and the executed end-effector path in the robot base frame; rewards and outcome.
Summary: success rate over judged trials with its Wilson interval and who judged them, success per
scene (layout) with `--scenes`, by target object and by instruction, reward histograms, latency per
stage, and the runs by checkpoint: per (checkpoint, adapter) that answered — the prediction's model id —
trials, judged successes with their Wilson interval and mean rewards. `write_comparison_report` puts
that table over several logs on one page. A sweep folder (`vla-r1 sweep`) gets `write_sweep_report`:
success versus error with Wilson bands and VLA-R1-3B's operating point. Pictures are inline PNGs
(base64), so the file can be mailed around.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report is written on machines with no display
import matplotlib.pyplot as plt
import numpy as np

from vla_r1_ros.core.annotate import SHOWN_LABEL_CHARS, SHOWN_TEXT_CHARS, annotate, capped
from vla_r1_ros.core.episodes import EpisodeStoreError, load_color, write_bytes_atomic, write_text_atomic
from vla_r1_ros.core.labels import LabelledEpisode, labelled_episodes, outcomes_by_checkpoint, trial_outcomes_from_log
from vla_r1_ros.core.trials import TrialOutcome, compare_checkpoints, format_summary, summarize

SUMMARY_FILE, TRIALS_FILE = "summary.json", "trials.json"  # what `vla-r1 trials` writes beside its log

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


def _line(text: str) -> str:
    return capped(text, SHOWN_LABEL_CHARS)


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


def _trial_html(root: Path, logged: LabelledEpisode) -> str:
    entry, episode = logged.entry, logged.document
    color = load_color(root, entry["episode"])
    parsed = episode["prediction"]["parsed"]
    reasoning = " / ".join(text for text in (parsed.get("reasoning") or {}).values() if text)
    caption = capped(reasoning if parsed.get("valid") else f"INVALID ({parsed.get('error', '')})", SHOWN_TEXT_CHARS)
    picture = (
        _png(annotate(color, parsed.get("box_normalized"), parsed.get("waypoints_normalized"), caption))
        if color is not None
        else "<p>(no image logged)</p>"
    )
    outcome = logged.outcome
    source = outcome.outcome_source
    if not outcome.judged:
        verdict = (
            f'<span class="muted">not judged ({html.escape(outcome.failure_stage or "awaiting judgement")})</span>'
        )
    elif outcome.success:
        verdict = f'<span class="ok">success</span> <span class="muted">judged by {html.escape(source)}</span>'
    else:
        stage = html.escape(outcome.failure_stage or "?")
        verdict = (
            f'<span class="fail">failed at {stage}</span> <span class="muted">judged by {html.escape(source)}</span>'
        )

    rewards = logged.rewards
    reward_rows = "".join(
        f"<tr><td>{key}</td><td>{'—' if rewards.get(key) is None else f'{rewards[key]:.3f}'}</td></tr>"
        for key in ("total", "format", "region", "trajectory")
    )
    timing_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.3f} s</td></tr>" for k, v in episode["timings"].items()
    )
    texts = "".join(
        f"<b>{html.escape(_line(task))}</b><pre>{html.escape(capped(text, SHOWN_TEXT_CHARS))}</pre>"
        for task, text in episode["prediction"]["raw_texts"].items()
    )
    return f"""
<div class="trial">
  <div>{picture}</div>
  <div>{_path_plot(episode)}</div>
  <div>
    <h3>#{html.escape(entry["episode"])} — {html.escape(_line(episode["instruction"]))}</h3>
    <p>{verdict} <span class="muted">{html.escape(capped(outcome.message, SHOWN_TEXT_CHARS))}</span></p>
    <table><tr><th>reward</th><th></th></tr>{reward_rows}</table>
    <table><tr><th>stage</th><th>time</th></tr>{timing_rows}</table>
    <p class="muted">reference: {html.escape(logged.references.source)}
      {html.escape(capped(logged.references.note, SHOWN_TEXT_CHARS))}</p>
    <details><summary>model output</summary>{texts}</details>
  </div>
</div>"""


def _bar_chart(title: str, counts: dict[str, tuple[int, int]]) -> str:
    """Success rate per key; counts: key -> (successes, trials)."""
    keys = sorted(counts)
    figure, axes = plt.subplots(figsize=(5, 0.35 * len(keys) + 1.2))
    rates = [counts[k][0] / counts[k][1] for k in keys]
    # Logged text is data: a `$` would start matplotlib mathtext (and an unpaired one raises).
    axes.barh(range(len(keys)), rates, color="tab:green")
    axes.set_yticks(range(len(keys)), [_line(key).replace("$", r"\$") for key in keys])
    for y, key in enumerate(keys):
        axes.text(min(rates[y], 0.85) + 0.02, y, f"{counts[key][0]}/{counts[key][1]}", va="center", fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_xlabel("success rate")
    axes.set_title(title)
    axes.tick_params(axis="y", labelsize=7)
    return _png(figure)


def _reward_histograms(episodes: list[LabelledEpisode]) -> str:
    keys = ("total", "format", "region", "trajectory")
    figure, axes = plt.subplots(1, len(keys), figsize=(10, 2.2))
    for ax, key in zip(axes, keys, strict=True):
        values = [e.rewards[key] for e in episodes if e.rewards.get(key) is not None]
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


def _per_scene_table(summary: dict[str, Any]) -> str:
    """Success per layout (the paper's scenes × trials protocol); empty when every layout ran once."""
    scenes = summary.get("per_scene", {})
    if not any(scene["n"] > 1 for scene in scenes.values()):
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(seed)}</td><td>{scene['successes']}/{scene['n']}</td>"
        f"<td>{scene['success_rate']:.0%}</td><td>{scene['wilson_95'][0]:.0%} – {scene['wilson_95'][1]:.0%}</td></tr>"
        for seed, scene in scenes.items()
    )
    return (
        "<h2>Success per scene</h2><table><tr><th>layout seed</th><th>judged successes</th><th>rate</th>"
        f"<th>95% Wilson</th></tr>{rows}</table>"
    )


def _camera_judge_section(episodes: list[LabelledEpisode], summary: dict[str, Any]) -> str:
    """The camera judge against the simulator (a confusion matrix over the episodes both judged) and the
    timeline of a self-reset run (its resets and operator calls between the trials); empty otherwise."""
    cells: dict[tuple[str, str], int] = {}
    for episode in episodes:
        camera, simulator = episode.document.get("vision_judge"), episode.document.get("simulator_success")
        if camera is None or simulator is None:
            continue
        said = (
            "handed to the operator"
            if camera.get("asks_operator") or not camera.get("judged")
            else ("success" if camera.get("success") else "failure")
        )
        key = (said, "success" if simulator else "failure")
        cells[key] = cells.get(key, 0) + 1
    parts = []
    if cells:
        rows = "".join(
            f"<tr><th>camera: {said}</th>"
            + "".join(f"<td>{cells.get((said, physics), 0)}</td>" for physics in ("success", "failure"))
            + "</tr>"
            for said in ("success", "failure", "handed to the operator")
        )
        parts.append(
            "<h2>The camera judge against the simulator</h2><table><tr><th></th><th>simulator: success</th>"
            f"<th>simulator: failure</th></tr>{rows}</table>"
            '<p class="muted">camera success / simulator failure is a false success: the error that flatters a '
            "policy.</p>"
        )
    resets = summary.get("resets") or []
    if resets:
        by_trial: dict[int, list[dict[str, Any]]] = {}
        for event in resets:
            by_trial.setdefault(int(event["trial"]), []).append(event)
        rows = "".join(
            f"<tr><td>before trial {trial + 1}</td><td>{html.escape(str(event['kind']))}</td>"
            f"<td>{'ok' if event['success'] else 'FAILED'}</td>"
            f"<td>{html.escape(capped(str(event['message']), SHOWN_LABEL_CHARS))}</td></tr>"
            for trial, events in sorted(by_trial.items())
            for event in events
        )
        parts.append(
            "<h2>Resets and operator calls</h2><table><tr><th>when</th><th>what</th><th></th><th></th></tr>"
            f"{rows}</table>"
        )
    return "".join(parts)


def _comparison_table(rows: list[dict[str, Any]]) -> str:
    """The runs by checkpoint: one table row per (checkpoint, adapter) of `compare_checkpoints`."""

    def reward(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    body = "".join(
        f"<tr><td><code>{html.escape(_line(row['checkpoint']))}</code></td>"
        f"<td><code>{html.escape(_line(row['adapter'])) or '—'}</code></td><td>{row['trials']}</td>"
        f"<td>{row['successes']}/{row['n']}</td><td>{row['success_rate']:.0%}</td>"
        f"<td>{row['wilson_95'][0]:.0%} – {row['wilson_95'][1]:.0%}</td>"
        + "".join(f"<td>{reward(row['mean_rewards'][key])}</td>" for key in ("total", "format", "region", "trajectory"))
        + "</tr>"
        for row in rows
    )
    return (
        "<h2>Runs by checkpoint</h2><table><tr><th>checkpoint</th><th>adapter</th><th>trials</th>"
        "<th>judged successes</th><th>rate</th><th>95% Wilson</th><th>mean total</th><th>format</th>"
        f"<th>region</th><th>trajectory</th></tr>{body}</table>"
    )


def write_comparison_report(roots: list[str | Path], out: str | Path) -> Path:
    """One page comparing the runs of several logs by checkpoint and adapter (labels applied)."""
    roots = [Path(root) for root in roots]
    rows = compare_checkpoints(outcomes_by_checkpoint(roots))
    logs = "".join(f"<li><code>{html.escape(str(root))}</code></li>" for root in roots)
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>VLA-R1 runs by checkpoint</title>
<style>{_STYLE}</style></head><body>
<h1>VLA-R1 runs by checkpoint</h1>
<p class="muted">{len(roots)} logs; success rates over judged trials only, rewards re-scored with the labels.</p>
<ul>{logs}</ul>
{_comparison_table(rows)}
</body></html>
"""
    write_text_atomic(out, _writable_text(document))
    return Path(out)


def sweep_figure(curve: dict[str, Any]):
    """Success versus the swept error level, its 95 % Wilson band, and VLA-R1-3B's operating point."""
    points = sorted(curve["points"], key=lambda point: point["level"])
    levels = np.array([point["level"] for point in points])
    rates = np.array([point["success_rate"] for point in points])
    low, high = (np.array([point["wilson_95"][k] for point in points]) for k in (0, 1))
    figure, axes = plt.subplots(figsize=(6, 3.6))
    axes.fill_between(levels, low, high, color="tab:blue", alpha=0.2, label="95% Wilson band")
    axes.plot(levels, rates, "o-", color="tab:blue", label="judged success rate")
    for level, rate, point in zip(levels, rates, points, strict=True):
        axes.annotate(
            f"{point['successes']}/{point['n']}",
            (level, rate),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
        )
    if curve.get("paper_level") is not None:
        axes.axvline(curve["paper_level"], color="tab:red", linestyle="--", label="VLA-R1-3B (paper Table III)")
    vary = curve["vary"]
    if vary == "iou":
        axes.invert_xaxis()  # error grows to the right on every axis
    axes.set_xlabel(
        {"iou": "mean box IoU", "rmse": "mean trajectory RMSE (0–1000)"}.get(vary, f"{vary} rate") + "  (error grows →)"
    )
    axes.set_ylabel("success rate")
    axes.set_ylim(-0.02, 1.05)
    axes.set_title(f"success vs {vary} (other errors: {curve['base']})", fontsize=9)
    axes.legend(fontsize=7, loc="best")
    return figure


def write_sweep_report(root: str | Path, out: str | Path | None = None) -> Path:
    """`root/sweep.png` and the sweep's HTML report (default `root/report.html`) from `root/sweep.json`."""
    root = Path(root)
    out = Path(out) if out else root / "report.html"
    curve = json.loads((root / "sweep.json").read_text())
    buffer = io.BytesIO()
    figure = sweep_figure(curve)
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    png = buffer.getvalue()
    write_bytes_atomic(root / "sweep.png", png)
    rows = "".join(
        f"<tr><td>{point['level']:g}</td><td><code>{html.escape(str(point['noise']))}</code></td>"
        f"<td>{point['successes']}/{point['n']}</td><td>{point['success_rate']:.0%}</td>"
        f"<td>{point['wilson_95'][0]:.0%} – {point['wilson_95'][1]:.0%}</td>"
        f"<td>{html.escape(', '.join(f'{k}={v}' for k, v in point['failures'].items()) or '—')}</td>"
        f'<td><a href="{html.escape(curve["vary"])}={point["level"]:g}/report.html">trials</a></td></tr>'
        for point in curve["points"]
    )
    image = base64.b64encode(png).decode()
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>VLA-R1 sweep — {html.escape(root.name)}</title>
<style>{_STYLE}</style></head><body>
<h1>Success versus policy error</h1>
<p class="muted">{html.escape(str(root))} — scripted expert, error model key <b>{html.escape(curve["vary"])}</b>
varied, the rest {html.escape(curve["base"])}; the same layout seeds at every level; judged trials only.</p>
<img src="data:image/png;base64,{image}">
<table><tr><th>{html.escape(curve["vary"])}</th><th>error model</th><th>judged successes</th><th>rate</th>
<th>95% Wilson</th><th>failures</th><th></th></tr>{rows}</table>
</body></html>
"""
    write_text_atomic(out, document)
    return out


def _writable_text(value: Any) -> Any:
    """`value` (a JSON document) with every string writable as UTF-8: a lone surrogate (a `\\ud800`
    escape in a hand-edited episode.json) is shown as its escape instead of failing the report."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_writable_text(k): _writable_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_writable_text(v) for v in value]
    return value


def log_summary(root: str | Path) -> dict[str, Any]:
    """The summary of a log as it stands now: its trials recounted with their labels
    (`labels.trial_outcomes_from_log`, keeping the order, layout seeds and wall times of the run's
    `trials.json` when there is one), beside what the run's `summary.json` says about the run itself
    (policy, noise, why it stopped, unlogged trials, …). Raises EpisodeStoreError for a damaged file."""
    root = Path(root)
    stored: dict[str, Any] = {}
    ran: list[TrialOutcome] = []
    try:
        if (root / SUMMARY_FILE).is_file():
            stored = dict(json.loads((root / SUMMARY_FILE).read_text(encoding="utf-8")))
        if (root / TRIALS_FILE).is_file():
            ran = [TrialOutcome(**trial) for trial in json.loads((root / TRIALS_FILE).read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError) as exc:
        raise EpisodeStoreError(f"cannot read the run's {SUMMARY_FILE} / {TRIALS_FILE} in {root}: {exc}") from exc
    recount = summarize(trial_outcomes_from_log(root, ran))
    return {key: value for key, value in stored.items() if key not in recount} | recount


def write_report(root: str | Path, out: str | Path, summary: dict[str, Any] | None = None) -> Path:
    """The report of the log at `root`, every episode with its labels applied (`labels.labelled_episodes`).
    `summary`: the table to show (a finished run's own); default `log_summary(root)`."""
    root, out = Path(root), Path(out)
    episodes = [
        replace(episode, entry=_writable_text(episode.entry), document=_writable_text(episode.document))
        for episode in labelled_episodes(root)
    ]
    summary = summary or log_summary(root)
    by_target: dict[str, tuple[int, int]] = {}
    by_instruction: dict[str, tuple[int, int]] = {}
    for episode in episodes:
        if not episode.outcome.judged:
            continue  # success rates count judged trials only
        ok = int(episode.outcome.success)
        for table, key in (
            (by_target, episode.references.target or "unknown"),
            (by_instruction, episode.document["instruction"]),
        ):
            done, total = table.get(key, (0, 0))
            table[key] = (done + ok, total + 1)
    charts = ""
    if by_target:
        charts = (
            f'<div class="charts"><div>{_bar_chart("success by target object", by_target)}</div>'
            f"<div>{_bar_chart('success by instruction', by_instruction)}</div>"
            f"<div>{_latency_chart([e.document for e in episodes])}</div>"
            f"<div>{_reward_histograms(episodes)}</div></div>"
        )
    trials = "".join(_trial_html(root, episode) for episode in episodes)
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>VLA-R1 trials — {html.escape(root.name)}</title>
<style>{_STYLE}</style></head><body>
<h1>VLA-R1 trials</h1>
<p class="muted">{html.escape(str(root))} — {len(episodes)} episodes</p>
<pre>{html.escape(format_summary(summary))}</pre>
{_per_scene_table(summary)}
{_camera_judge_section(episodes, summary)}
{_comparison_table(compare_checkpoints(outcomes_by_checkpoint([root])))}
{charts}
<h2>Trials</h2>
{trials or "<p>No episodes logged.</p>"}
</body></html>
"""
    write_text_atomic(out, _writable_text(document))  # a logged message or note may hold a lone surrogate too
    return out
