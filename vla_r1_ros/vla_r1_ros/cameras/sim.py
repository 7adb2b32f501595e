"""The simulated camera: the workcell's RGB-D render, with the ground truth of the same instant."""

from __future__ import annotations

import threading

from vla_r1_ros.cameras.base import CameraError, RgbdFrame
from vla_r1_ros.sim.workcell import Workcell


class SimCamera:
    """CameraSource over `Workcell.capture()`. Every `read` renders a new frame (the simulator has no
    frame clock of its own); the Scene of that instant is in `frame.extras["scene"]`."""

    name = "sim"

    def __init__(self, workcell: Workcell) -> None:
        self.workcell = workcell
        self._sequence = 0
        self._running = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self._running = True

    def read(self, timeout_s: float) -> RgbdFrame | None:
        # Rendering takes ~0.1 s and cannot be interrupted; timeout_s only bounds waiting, of which
        # there is none here.
        if not self._running:
            raise CameraError("sim camera: read() before start() or after stop()")
        frame, scene = self.workcell.capture()
        with self._lock:
            self._sequence += 1
            frame.sequence = self._sequence
        frame.extras["scene"] = scene
        return frame

    def stop(self) -> None:
        self._running = False
