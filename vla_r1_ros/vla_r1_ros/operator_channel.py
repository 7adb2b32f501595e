"""How an unattended run reaches a person: only for the exceptions (people handle exceptions, not every trial).

Two things need a person in a camera-judged, self-reset run: a trial the camera could not judge, or judged
below its confidence threshold (`ask`), and a self-reset that failed MAX_FAILED_RESETS times in a row
(`call`). `OperatorChannel` carries both to one of:
- a command (`vla-r1 trials --on-exception CMD`: a pager, a chat hook): run through the shell with one JSON
  object on its stdin — `{"event": "judge", "trial": …, "instruction": …, "episode_id": …, "message": …,
  "log_dir": …}` or `{"event": "reset_failed", "reason": …}`. For `judge` the first line it prints is the
  judgement (`{"success": false, "failure_stage": "grasp", "note": …}`, as `--judge FILE` lines); nothing
  printed leaves the trial not judged. For `reset_failed` exit status 0 means a person put the scene
  back; anything else that nobody did.
- the console, when stdin is a terminal: the judgement prompt of `--manual-reset`, and Enter once the
  scene is put back.
- nobody (stdin closed, no command): a trial stays not judged and the run goes on; a failed reset
  pauses the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from vla_r1_ros.core import labels
from vla_r1_ros.core.trials import TrialOutcome

COMMAND_TIMEOUT_S = 3600.0  # a person paged at night may take a while to answer


class OperatorChannel:
    def __init__(self, command: str = "", console: bool | None = None, ask: Callable[[str], str] = input) -> None:
        """`command`: `--on-exception`; `console`: ask on the terminal (default: when stdin is one)."""
        self.command = command
        self.console = sys.stdin.isatty() if console is None else console
        self.ask_line = ask
        self.attached = bool(command) or self.console

    def _run(self, event: dict[str, Any]) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(
                self.command,
                shell=True,
                input=json.dumps(event),
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"vla-r1: --on-exception {self.command!r} failed: {exc}", file=sys.stderr)
            return None

    def ask(self, outcome: TrialOutcome, log_dir: str) -> dict[str, Any] | None:
        """The operator's judgement of a trial the camera handed over, or None when nobody gave one."""
        if self.command:
            done = self._run(
                {
                    "event": "judge",
                    "trial": outcome.index + 1,
                    "instruction": outcome.instruction,
                    "episode_id": outcome.episode_id,
                    "message": outcome.message,
                    "log_dir": log_dir,
                }
            )
            first = (done.stdout.strip().splitlines() or [""])[0] if done is not None else ""
            if not first:
                return None
            try:
                return labels.parse_judgement(first)
            except labels.LabelError as exc:
                print(f"vla-r1: --on-exception answered {first[:200]!r}: {exc}; not judged", file=sys.stderr)
                return None
        if self.console:
            return labels.ask_judgement(self.ask_line, f"the camera could not decide: {outcome.message}")
        return None

    def call(self, reason: str) -> bool:
        """Tell a person the run needs them; True once somebody has put the scene back."""
        if self.command:
            done = self._run({"event": "reset_failed", "reason": reason})
            return done is not None and done.returncode == 0
        if self.console:
            self.ask_line(f"vla-r1: {reason}\nput every object back on the table (none in the tray), then press Enter ")
            return True
        return False
