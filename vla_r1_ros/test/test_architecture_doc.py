"""docs/ARCHITECTURE.md's module table stays true: every module of the package is named in it, and it
names no module that no longer exists."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vla_r1_ros"
DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


def table_rows() -> dict[str, str]:
    """The module table's rows by their first cell (`core/trials.py`, `sim/`, …)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        if match := re.match(r"\| `([^`]+)` \|(.*)", line):
            rows[match.group(1)] = match.group(2)
    return rows


def modules() -> list[Path]:
    return sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def named(module: Path, rows: dict[str, str]) -> bool:
    """A module has a row of its own (`core/trials.py`), or its folder's row names it (`sim/` … `layout`)."""
    if str(module) in rows:
        return True
    for depth in range(len(module.parts) - 1, 0, -1):
        folder = "/".join(module.parts[:depth]) + "/"
        if folder in rows:
            rest = "/".join(module.with_suffix("").parts[depth:])
            return f"`{rest}`" in rows[folder] or f"`{rest}.py`" in rows[folder]
    return False


def test_every_module_of_the_package_is_in_the_architecture_table():
    rows = table_rows()
    missing = [str(m) for m in modules() if not named(m, rows)]
    assert not missing, f"docs/ARCHITECTURE.md's module table does not name: {missing}"


def test_the_table_names_only_modules_that_exist():
    gone = [name for name in table_rows() if name.endswith((".py", "/")) and not (PACKAGE / name).exists()]
    assert not gone, f"docs/ARCHITECTURE.md names modules that do not exist: {gone}"
