"""What one process hands each node it runs: the package configuration and the simulated workcell.

`spin_nodes` builds one `ProcessContext` per process: the configuration is read once there, never in a
node's constructor. Nodes composed into one process (the sim stack: workcell node, perception with
`source: sim`, planning with `executor: sim`) must see the same simulated world, so they all take it
from their context. It is created on first use: PyBullet and the renderer load only in processes that
need them (importing this module loads neither).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from vla_r1_ros.core.config import PackageConfig

if TYPE_CHECKING:
    from vla_r1_ros.sim.workcell import Workcell


class ProcessContext:
    def __init__(self, config: PackageConfig, workcell: Workcell | None = None) -> None:
        """`workcell`: an existing one to share (tests); otherwise one is built from `config` on first use,
        owned and closed by this context."""
        self.config = config
        self._workcell = workcell
        self._owns_workcell = workcell is None
        self._lock = threading.Lock()

    def workcell(self) -> Workcell:
        """The process's simulated workcell (the same object for every node of the process)."""
        with self._lock:
            if self._workcell is None:
                from vla_r1_ros.sim.workcell import Workcell

                self._workcell = Workcell(self.config)
            return self._workcell

    def close(self) -> None:
        with self._lock:
            if self._owns_workcell and self._workcell is not None:
                self._workcell.close()
                self._workcell = None
