"""What a run of trials tells the outside world: the `TrialObserver` seam of `trial_runner`.

An observer hears each finished (and judged) trial, each event the operator must know at once (a pause
and its cause, a logging problem, a stop), and the stages of the running trial. `ProgressBar` is the
terminal's: a tqdm bar with the running success count, events written above it.
"""

from __future__ import annotations

import sys

from vla_r1_ros.core.trials import TrialOutcome


class TrialObserver:
    def on_trial(self, outcome: TrialOutcome) -> None:
        """A trial finished (judged, when the run has a judge)."""

    def on_event(self, text: str) -> None:
        """Something the operator must know now."""

    def on_stage(self, stage: str) -> None:
        """The running trial entered `stage` (the planning node's ExecuteInstruction feedback)."""


class ProgressBar(TrialObserver):
    def __init__(self, total: int, enabled: bool = True) -> None:
        """`enabled`: false where questions are the progress (a manual-reset run): a bar would run into them."""
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="trials", unit="trial", disable=total == 0 or not enabled)
        self._successes = 0
        self._done = 0

    def on_trial(self, outcome: TrialOutcome) -> None:
        self._done += 1
        self._successes += bool(outcome.success)
        self.bar.set_postfix(success=f"{self._successes}/{self._done}", last=outcome.failure_stage or "ok")
        self.bar.update()

    def on_event(self, text: str) -> None:
        self.bar.write(f"vla-r1: {text}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
