"""Stepping the workcell's physics: fixed time steps under the workcell lock, in short chunks so the
camera thread can render between them, paced against the wall clock when a real-time factor is set."""

from __future__ import annotations

import threading
import time
from typing import Any

import pybullet as p


class PhysicsClock:
    """Steps one PyBullet client. `step` releases the lock between chunks; `step_locked` is for callers
    that already hold it."""

    def __init__(self, client: int, lock: threading.RLock, physics_config: dict[str, Any], gui: bool) -> None:
        self.client = client
        self.lock = lock
        self.timestep = float(physics_config["timestep_s"])
        self.chunk = int(physics_config["control_chunk_steps"])
        self.real_time_factor = 1.0 if gui else float(physics_config["real_time_factor"])

    def steps_for(self, seconds: float) -> int:
        return max(1, round(seconds / self.timestep))

    def step(self, seconds: float) -> None:
        """Advance physics with the current motor commands (e.g. let a released object settle)."""
        steps = self.steps_for(seconds)
        started = time.monotonic()
        done = 0
        while done < steps:
            n = min(self.chunk, steps - done)
            with self.lock:
                self.step_locked(n)
            done += n
            self.pace(started, done)

    def step_locked(self, steps: int) -> None:
        for _ in range(steps):
            p.stepSimulation(physicsClientId=self.client)

    def pace(self, started: float, steps_done: int) -> None:
        """With a real-time factor (GUI), sleep so simulated time does not run ahead of the wall clock."""
        if self.real_time_factor > 0:
            ahead = steps_done * self.timestep / self.real_time_factor - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
