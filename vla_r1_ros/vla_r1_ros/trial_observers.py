"""What a run of trials tells the outside world: the `TrialObserver` seam of `trial_runner`.

An observer hears each finished (and judged) trial, each event the operator must know at once (a pause
and its cause, a logging problem, a stop), the stages of the running trial, and the end of the run.
`ProgressBar` is the terminal's: a tqdm bar with the running success count, events written above it.
`SummaryWriter` is the run folder's: at the end, the summary table on stdout and `summary.json`,
`trials.json` and `report.html` beside the episode log. `RecordingIndex` is a recorded run's
(`--record`): `recording.json`, the run's bag and each trial's span in it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vla_r1_ros.core.episodes import RECORDING_FILE, RUN_CONFIG_FILE, EpisodeStoreError, write_json_atomic
from vla_r1_ros.core.trials import TrialOutcome, format_summary, summarize


class TrialObserver:
    def on_trial(self, outcome: TrialOutcome) -> None:
        """A trial finished (judged, when the run has a judge)."""

    def on_event(self, text: str) -> None:
        """Something the operator must know now."""

    def on_stage(self, stage: str) -> None:
        """The running trial entered `stage` (the planning node's ExecuteInstruction feedback)."""

    def on_run_end(self, outcomes: Sequence[TrialOutcome], stopped: str, unlogged: Sequence[str]) -> None:
        """The run ended: its outcomes, why it stopped early ("" when it ran every trial), and the finished
        trials the reward logger never confirmed."""


class ProgressBar(TrialObserver):
    def __init__(self, total: int, enabled: bool = True) -> None:
        """`enabled`: false where questions are the progress (a manual-reset run): a bar would run into them."""
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="trials", unit="trial", disable=total == 0 or not enabled)
        self._successes = 0
        self._done = 0

    def on_trial(self, outcome: TrialOutcome) -> None:
        self._done += 1
        self._successes += outcome.judged and outcome.success  # an executed trial nobody judged is none
        self.bar.set_postfix(success=f"{self._successes}/{self._done}", last=outcome.failure_stage or "ok")
        self.bar.update()

    def on_event(self, text: str) -> None:
        self.bar.write(f"vla-r1: {text}", file=sys.stderr)

    def on_run_end(self, outcomes: Sequence[TrialOutcome], stopped: str, unlogged: Sequence[str]) -> None:
        self.close()  # before anything prints the summary under it

    def close(self) -> None:
        self.bar.close()


class SummaryWriter(TrialObserver):
    def __init__(
        self,
        out: Path,
        total: int,
        run: Mapping[str, Any],
        report: bool = True,
        sections: Callable[[], Mapping[str, Any]] = dict,
    ) -> None:
        """`run`: what the summary says the run was (policy, noise, seed, protocol, …) beside its figures;
        `sections`: more of it known only at the end (a self-reset run's resets); `report`: also draw
        report.html. `error` holds why the files could not be written, if they could not."""
        self.out = out
        self.total = total
        self.run = dict(run)
        self.sections = sections
        self.report = report
        self.summary: dict[str, Any] = {}
        self.error = ""

    def on_run_end(self, outcomes: Sequence[TrialOutcome], stopped: str, unlogged: Sequence[str]) -> None:
        summary = summarize(list(outcomes)) | self.run | dict(self.sections()) | {"run_config": RUN_CONFIG_FILE}
        if stopped:
            summary |= {"stopped": stopped, "not_run": self.total - len(outcomes)}
        if unlogged:
            summary["unlogged"] = list(unlogged)
        self.summary = summary
        print(format_summary(summary))
        try:
            write_json_atomic(self.out / "summary.json", summary)
            write_json_atomic(self.out / "trials.json", [outcome.to_json() for outcome in outcomes])
            if self.report:
                from vla_r1_ros.report import write_report

                print(f"report: {write_report(self.out, self.out / 'report.html', summary=summary)}")
            print(f"summary: {self.out / 'summary.json'}")
        except (OSError, EpisodeStoreError) as exc:  # a full or read-only disk: the table above is all there is
            self.error = f"could not write the summary into {self.out}: {exc}"
            print(f"vla-r1: {self.error}", file=sys.stderr)


class RecordingIndex(TrialObserver):
    """`recording.json` in the run's folder: the bag (relative to the folder) and, for each trial, its
    episode (`trial_id`, as the index line names it) and its span in the bag, `start_ns` to `end_ns` on the
    host clock (the bag's receive stamps). A span runs from the end of the trial before (the run's start)
    to the first stage of the trial after (the run's end): it holds the reset before the trial, all the
    trial made the graph publish and its logged line, however late the recorder receives what this
    process heard first (a message reaches two subscribers a few milliseconds apart). Until the next
    trial starts, the last span's `end_ns` is null.

    Written here and not into the episodes: the reward logger writes an episode before its trial has
    ended and never rewrites it, and the logger knows nothing of a bag; only the run sees trials begin
    and end. Data goes one way: the graph into the bag and the log, the run into this file. Rewritten
    whole (atomically) at each change, so a run that dies leaves the spans it had; a file the disk
    refuses is said on stderr once and never stops the run."""

    def __init__(self, out: Path, bag_dir: Path, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = out / RECORDING_FILE
        self.bag = os.path.relpath(bag_dir, out)
        self.clock = clock
        self.trials: list[dict[str, Any]] = []
        self.error = ""
        self._since_ns = clock()

    def on_trial(self, outcome: TrialOutcome) -> None:
        ended_ns = self.clock()
        span = {"trial": outcome.index, "trial_id": outcome.episode_id or None, "start_ns": self._since_ns}
        self.trials.append(span | {"end_ns": None})
        self._since_ns = ended_ns
        self._write()

    def on_stage(self, stage: str) -> None:
        self._close_last_span()

    def on_run_end(self, outcomes: Sequence[TrialOutcome], stopped: str, unlogged: Sequence[str]) -> None:
        self._close_last_span()

    def _close_last_span(self) -> None:
        if self.trials and self.trials[-1]["end_ns"] is None:
            self.trials[-1]["end_ns"] = self.clock()
            self._write()

    def _write(self) -> None:
        try:
            write_json_atomic(self.path, {"bag": self.bag, "trials": self.trials})
        except (OSError, EpisodeStoreError) as exc:
            if not self.error:
                self.error = f"could not write {self.path}: {exc}"
                print(f"vla-r1: {self.error} (the bag is still recorded)", file=sys.stderr)
