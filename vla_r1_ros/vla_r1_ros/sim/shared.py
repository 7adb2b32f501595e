"""The process-wide simulated workcell.

Nodes composed into one process (workcell node, perception with `source: sim`, planning with
`executor: sim`) must see the same simulated world, so they all take it from here. It is created on
first use (PyBullet and the renderer load only in processes that need them: importing this module
loads neither) and closed at exit.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vla_r1_ros.sim.workcell import Workcell

_lock = threading.Lock()
_workcell: Workcell | None = None


def shared_workcell(gui: bool = False) -> Workcell:
    """The one Workcell of this process (created with the configured defaults on first call; `gui` only
    matters for that first call)."""
    global _workcell
    with _lock:
        if _workcell is None:
            from vla_r1_ros.sim.workcell import Workcell

            _workcell = Workcell(gui=gui)
            atexit.register(_workcell.close)
        return _workcell
