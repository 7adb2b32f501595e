"""Debian's chromium for the browser tests (the report, the label page): where it is and how it runs
headless and offline. `make test` installs it (scripts/setup.sh with VLA_R1_TEST_TOOLS=1, as root)."""

from __future__ import annotations

import shutil

# Headless, no sandbox (tests run as root in CI), and nothing that reaches out to the network.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_path() -> str | None:
    """The chromium executable, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")
