"""Package checks that `colcon test` runs: the package is a valid ament_python package whose
manifest, setup.py and installed resources agree."""

from __future__ import annotations

import ast
from pathlib import Path

from catkin_pkg.package import parse_package

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _setup_call_keywords() -> dict[str, ast.expr]:
    tree = ast.parse((PACKAGE_DIR / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return {k.arg: k.value for k in call.keywords}


def test_manifest_is_valid_and_matches_setup_py():
    package = parse_package(str(PACKAGE_DIR / "package.xml"))
    package.validate()
    assert package.name == "vla_r1_ros"
    assert package.get_build_type() == "ament_python"
    keywords = _setup_call_keywords()
    assert ast.literal_eval(keywords["version"]) == package.version
    assert (PACKAGE_DIR / "resource" / package.name).is_file()


def test_interfaces_manifest_is_valid():
    package = parse_package(str(PACKAGE_DIR.parent / "vla_r1_interfaces" / "package.xml"))
    package.validate()
    assert package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [group.name for group in package.member_of_groups]


def test_every_console_script_points_at_an_existing_main():
    entry_points = ast.literal_eval(_setup_call_keywords()["entry_points"])
    for spec in entry_points["console_scripts"]:
        name, target = (part.strip() for part in spec.split("="))
        module, function = target.split(":")
        source = PACKAGE_DIR.joinpath(*module.split(".")).with_suffix(".py")
        assert source.is_file(), f"{name}: {source} missing"
        defined = {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert function in defined, f"{name}: {module} has no {function}()"
