#!/usr/bin/env bash
# Proves both packages are valid ROS 2 packages: `colcon build` + `colcon test` in an isolated
# workspace under build/colcon, as a lab builds them in ~/ws (with the venv's wheels standing in for
# /opt/ros/jazzy). colcon test runs the package checks only; the full suite runs once, through pytest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ws="$root/build/colcon"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
mkdir -p "$ws"
cd "$ws"
paths=(--base-paths "$root/vla_r1_interfaces" "$root/vla_r1_ros" --build-base "$ws/build" --install-base "$ws/install")
events=(--event-handlers console_cohesion+ status- summary+)
colcon --log-base "$ws/log" build "${paths[@]}" "${events[@]}" \
  --cmake-args -DPython3_EXECUTABLE="$(command -v python)" -DBUILD_TESTING=OFF
colcon --log-base "$ws/log" test "${paths[@]}" "${events[@]}" --pytest-args test/test_package.py
colcon --log-base "$ws/log" test-result --test-result-base "$ws/build" --verbose
