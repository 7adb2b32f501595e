# Two entry points (see README "Quick start"): `make demo` and `make test`. Both set everything up
# from nothing first (scripts/setup.sh is idempotent and reuses an existing .venv).
SHELL := /bin/bash
VENV := .venv
RUN := source $(VENV)/bin/activate &&
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow lint format colcon-test clean

setup:
	@bash scripts/setup.sh

demo: setup
	rm -rf runs/demo
	$(RUN) vla-r1 demo --trials 20 --seed 0 --out runs/demo

test: export VLA_R1_TEST_TOOLS = 1
test: setup lint colcon-test
	$(RUN) cd vla_r1_ros && python -m pytest -q $(PYTEST_ARGS)

test-slow: setup
	$(RUN) cd vla_r1_ros && python -m pytest -q -m slow $(PYTEST_ARGS)

lint: setup
	$(RUN) ruff format --check . && ruff check .

format: setup
	$(RUN) ruff format . && ruff check --fix .

colcon-test: setup
	$(RUN) bash scripts/colcon-check.sh

clean:
	rm -rf build install log
