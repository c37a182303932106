# Every target that needs the environment depends on .venv/.installed, which is
# rebuilt when missing or older than pyproject.toml: `make test` and
# `make leaderboard` work on a fresh clone with nothing installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUITE ?= quick
WORKERS ?= 2
export KERAS_BACKEND ?= jax

.PHONY: install test test-slow lint leaderboard report probes ui distributed-demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]' > $(VENV)/install.log 2>&1 \
	  || (grep -v "is ignored" $(VENV)/install.log; exit 1)
	$(BIN)/python -c "import harness, tasks, search_spaces, keras, keras_tuner, mlflow"
	touch $@

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

leaderboard: install
	$(BIN)/harness run --suite $(SUITE)
	$(BIN)/harness report --suite $(SUITE)

report: install
	$(BIN)/harness report --suite $(SUITE)

ui: install
	$(BIN)/harness ui

probes: install  # gradient flow, the rotation oracle, cost scaling (a few minutes on 2 CPU cores)
	$(BIN)/harness probe rotation --suite $(SUITE)
	$(BIN)/harness probe gradients --suite $(SUITE)
	$(BIN)/harness probe cost --suite $(SUITE)

distributed-demo: install  # a local mlflow server, a chief and $(WORKERS) workers on 127.0.0.1
	scripts/distributed_demo.sh $(WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis data/ *.egg-info
