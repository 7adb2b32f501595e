"""`python -m vla_r1_ros.die_with_launcher LAUNCHER_PID COMMAND [ARG…]`: run COMMAND so that the kernel
ends it when the launcher that started it ends, however that happens.

Every process of the graph is started through this (`graph.ProcessSpec.launch_kwargs` gives it as
launch_ros's `prefix`; `vla-r1 demo` runs the same command line). A launch that crashes leaves the
processes it had started running, orphaned (ros2/launch#747), and a launcher killed with SIGKILL stops
nothing; a simulator or an arm driver left behind holds the robot and the DDS domain. Linux's
`prctl(PR_SET_PDEATHSIG)` asks the kernel to send SIGTERM when the parent (the launcher's thread that
forked) ends, rclpy shuts a node down cleanly on SIGTERM, and the setting survives `exec`, so it covers
this package's nodes and other packages' C++ nodes (robot_state_publisher, rviz2, realsense2_camera)
alike. Linux only, as the stack is.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import sys

MODULE = "vla_r1_ros.die_with_launcher"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class LauncherGone(RuntimeError):
    """The launcher ended before the child could ask to die with it."""


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send this process SIGTERM when its parent ends; `parent_pid` is the launcher's pid."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    # A launcher that died between our fork and the prctl above sends nothing: we were re-parented (to
    # init or a subreaper) before asking. Checked after asking, so no window is left.
    if os.getppid() != parent_pid:
        raise LauncherGone(f"the launcher (pid {parent_pid}) ended before this process started")


def launch_prefix(launcher_pid: int) -> str:
    """The command prefix (launch_ros `prefix`, split with shlex) that runs a command through here."""
    return shlex.join([sys.executable, "-m", MODULE, str(launcher_pid)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or not argv[0].isdigit():
        print(f"usage: python -m {MODULE} LAUNCHER_PID COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        die_with_parent(int(argv[0]))
    except LauncherGone as exc:
        print(f"{MODULE}: {exc}: not starting {argv[1]}", file=sys.stderr)
        return 1
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
