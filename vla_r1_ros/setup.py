"""ament_python package vla_r1_ros: nodes, launch files, configuration, URDF and the `vla-r1` CLI."""

from glob import glob

from setuptools import find_packages, setup

package_name = "vla_r1_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        (
            "share/" + package_name + "/config",
            glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml") + glob("config/*.json"),
        ),
        ("share/" + package_name + "/config/accelerate", glob("config/accelerate/*.yaml")),
        ("share/" + package_name + "/urdf", glob("urdf/*")),
    ],
    # The labelling page's files are read at run time with importlib.resources; the lerobot writer's
    # isolated environment is built from its requirements file.
    package_data={"vla_r1_ros.label_page": ["*.html", "*.js", "*.css"], "vla_r1_ros.lerobot_writer": ["*.txt"]},
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="vla_r1_ros maintainers",
    maintainer_email="maintainers@vla-r1-ros.org",
    description="VLA-R1 reasoning vision-language-action model on a ROS 2 robot arm.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "vla-r1 = vla_r1_ros.cli.main:main",
            "perception_node = vla_r1_ros.nodes.perception_node:main",
            "inference_node = vla_r1_ros.nodes.inference_node:main",
            "planning_node = vla_r1_ros.nodes.planning_node:main",
            "reward_logger_node = vla_r1_ros.nodes.reward_logger_node:main",
            "workcell_node = vla_r1_ros.nodes.workcell_node:main",
            "recorder_node = vla_r1_ros.nodes.recorder_node:main",
            "stack = vla_r1_ros.nodes.stack:main",
        ],
    },
)
