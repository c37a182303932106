# Every target that needs the environment depends on .venv/.installed, which is
# rebuilt when missing, older than pyproject.toml or made for other extras: `make test`
# and `make leaderboard` work on a fresh clone with nothing installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
comma := ,
# yes where `nvidia-smi -L` runs and lists a GPU ("GPU 0: NVIDIA H100 ..."), else empty.
HAS_GPU := $(shell out=$$(nvidia-smi -L 2>/dev/null) && echo "$$out" | grep -q '^GPU ' && echo yes)
# The extras to install, worked out once per make run: dev everywhere, plus cuda (the CUDA
# build of JAX) on a GPU machine. `make EXTRAS=dev ...` overrides it.
EXTRAS := $(if $(HAS_GPU),dev$(comma)cuda,dev)
# The extras .venv was installed with, as its stamp records them (an empty stamp, written
# before stamps recorded them, means dev); other extras than EXTRAS make .venv afresh,
# since pip cannot take an extra's packages away.
INSTALLED := $(if $(wildcard $(VENV)/.installed),$(or $(shell cat $(VENV)/.installed),dev))
OTHER_EXTRAS := $(filter-out $(EXTRAS),$(INSTALLED))
SUITE ?= quick
WORKERS ?= 2
export KERAS_BACKEND ?= jax

# The study's store (suites/study.toml) lives in data/study/ and is published, with its
# models, as reports/study/store.tar.gz.
STUDY_STORE := data/study
STUDY_URI := sqlite:///$(STUDY_STORE)/mlflow.db
STUDY_ARCHIVE := reports/study/store.tar.gz
# The archive holds the study of the random protocol, run before the grid protocol and
# majority verdicts (today's code no longer recomputes its cells): it verifies with the code
# of STUDY_COMMIT, and the study run again starts a fresh store; its archive, once packed,
# is marked "grid" in STUDY_PROTOCOL and verifies with this code.
STUDY_COMMIT ?= 7cc0553
STUDY_PROTOCOL := reports/study/study-protocol.txt
PART ?=
# Minutes of training one `make study` runs before it stops, verifies, reports and archives
# what is done (a part of hours runs as several of these; each rerun goes on).
STUDY_MINUTES ?= 80

.PHONY: FORCE install test test-slow lint leaderboard report probes study verify-study ui \
	distributed-demo clean

install: $(VENV)/.installed

# With the cuda extra, the install ends by printing the GPUs JAX sees, and fails if none.
$(VENV)/.installed: pyproject.toml $(if $(OTHER_EXTRAS),FORCE)
	$(if $(OTHER_EXTRAS),rm -rf $(VENV))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]' > $(VENV)/install.log 2>&1 \
	  || (grep -v "is ignored" $(VENV)/install.log; exit 1)
	$(BIN)/python -c "import harness, tasks, search_spaces, keras, keras_tuner, mlflow"
	$(if $(findstring cuda,$(EXTRAS)),$(BIN)/python -c "import jax; print(jax.devices('gpu'))")
	echo '$(EXTRAS)' > $@

FORCE:

# The fast tests in two processes (a test file stays in one, so its fixtures are built once),
# the longest files first (tests/conftest.py's LONGEST_FIRST).
test: install
	$(BIN)/pytest -q -n 2 --dist loadfile --no-loadscope-reorder

test-slow: install
	$(BIN)/pytest -q -m slow -n 2 --dist loadfile --no-loadscope-reorder

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The search, then every stored score recomputed from the stored models (verify exits 1
# on a mismatch, so no leaderboard is written from numbers it could not recompute).
leaderboard: install
	$(BIN)/harness run --suite $(SUITE) --workers $(WORKERS)
	$(BIN)/harness verify --suite $(SUITE)
	$(BIN)/harness report --suite $(SUITE) --update-readme

report: install
	$(BIN)/harness report --suite $(SUITE) --update-readme

ui: install
	$(BIN)/harness ui

# The mechanism studies: the state suite (which recurrences learn to count mod 8 and to keep
# a parity, tested at lengths never trained on; $(WORKERS) cells at a time) and its report
# in reports/state/, then gradient flow, the rotation counters beside the state suite's
# learned counting models and cost scaling, with their report in reports/probes/.
probes: install
	$(BIN)/harness run --suite state --workers $(WORKERS)
	$(BIN)/harness verify --suite state
	$(BIN)/harness report --suite state --out reports/state
	$(BIN)/harness probe rotation --suite state
	$(BIN)/harness probe gradients --suite state
	$(BIN)/harness probe cost --suite state
	$(BIN)/harness probe report --suite state --out reports/probes

# The study, or one part of it (make study PART=memory): a machine without the study's store
# starts from the committed archive; the part runs (resuming) for at most STUDY_MINUTES
# (harness run exits 3 when it stops there: rerun to go on), what is done is verified, the
# report and README's study block are rewritten from the whole store, and the store is
# archived again.
study: install
	test -f $(STUDY_STORE)/mlflow.db || ! grep -qx grid $(STUDY_PROTOCOL) 2>/dev/null || \
		$(BIN)/python scripts/store_archive.py unpack $(STUDY_ARCHIVE) --store $(STUDY_STORE)
	$(BIN)/harness run --suite study $(if $(PART),--part $(PART)) --workers $(WORKERS) \
		--tracking-uri $(STUDY_URI) --stop-after $(STUDY_MINUTES) || test $$? -eq 3
	$(BIN)/harness verify --suite study $(if $(PART),--part $(PART)) --tracking-uri $(STUDY_URI)
	$(BIN)/harness report --suite study --out reports/study --tracking-uri $(STUDY_URI) \
		--update-readme --readme-block study
	$(BIN)/python scripts/store_archive.py pack $(STUDY_ARCHIVE) --store $(STUDY_STORE) \
		--experiment study
	echo grid > $(STUDY_PROTOCOL)

# The published study verified without training: its archive unpacked into a fresh folder and
# verified by this code, or, for the archive of the random protocol, by the code of the commit
# that wrote it (STUDY_COMMIT, extracted with its own environment into data/study-code).
verify-study: install
ifeq ($(shell cat $(STUDY_PROTOCOL) 2>/dev/null),grid)
	rm -rf data/study-published
	$(BIN)/python scripts/store_archive.py unpack $(STUDY_ARCHIVE) --store data/study-published
	$(BIN)/harness verify --suite study --tracking-uri sqlite:///data/study-published/mlflow.db
else
	rm -rf data/study-code && mkdir -p data/study-code
	git archive $(STUDY_COMMIT) | tar -x -C data/study-code
	$(MAKE) -C data/study-code verify-study
endif

distributed-demo: install  # a local mlflow server, a chief and $(WORKERS) workers on 127.0.0.1
	scripts/distributed_demo.sh $(WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis data/ *.egg-info
