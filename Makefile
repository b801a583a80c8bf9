# One entry point for people and CI. `make run` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run demo test test-pure compile lint format bench clean

# The pipeline modules setup.py compiles with mypyc (make compile); any change to them, or
# to setup.py, rebuilds before `make run` / `make test`, so a stale module is never used.
COMPILED_SOURCES := $(shell sed -n 's|^ *"\(kube_event_watcher/pipeline/[a-z_]*\.py\)",$$|\1|p' setup.py)
MANIFEST := kube_event_watcher/pipeline/.compiled.json

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 'setuptools>=77'  # as pyproject's build-system: no warnings from `make compile`
	KEW_MYPYC=0 $(BIN)/pip install --quiet -e '.[dev]'  # compiled by `make compile`
	touch $@

# KEW_MYPYC=1 makes a failed compile an error; unset, it falls back to pure Python (and
# `make compile` tries again: it always builds, the manifest rule only on a change).
BUILD_IN_PLACE := $(BIN)/python setup.py --quiet build_ext --inplace

$(MANIFEST): $(BIN)/.installed setup.py $(COMPILED_SOURCES)
	$(BUILD_IN_PLACE)

compile: $(BIN)/.installed  ## compile the pipeline modules in place (mypyc; pure Python without a C compiler)
	$(BUILD_IN_PLACE)

run: $(MANIFEST)  ## watch the current kubeconfig context; ARGS="-c config.yaml" for a config
	@if [ -z "$(ARGS)" ] && [ -z "$$KUBECONFIG" ] && [ ! -f "$$HOME/.kube/config" ]; then \
		echo "make run: no kubeconfig found (\$$KUBECONFIG, ~/.kube/config): starting a local demo cluster instead."; \
		echo "          To watch your cluster: make run ARGS='--kubeconfig FILE' (or set KUBECONFIG)."; \
		exec $(BIN)/kube-event-watcher demo; \
	fi; \
	exec $(BIN)/kube-event-watcher run $(ARGS)

demo: $(MANIFEST)  ## a local cluster (built from pinned Go modules) with broken workloads, watched
	$(BIN)/kube-event-watcher demo $(ARGS)

test: $(MANIFEST)  ## the whole suite: unit, integration, e2e (real kube-apiserver + etcd), compiled build
	$(BIN)/python -m pytest $(ARGS)

test-pure: $(BIN)/.installed  ## unit + integration on the .py sources and asyncio's own loop
	KEW_PURE_PYTHON=1 KEW_EVENT_LOOP=asyncio $(BIN)/python -m pytest tests/unit tests/integration $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff format --check kube_event_watcher tests bench conftest.py setup.py
	$(BIN)/ruff check kube_event_watcher tests bench conftest.py setup.py
	$(BIN)/mypy kube_event_watcher
	$(BIN)/lint-imports

format: $(BIN)/.installed
	$(BIN)/ruff format kube_event_watcher tests bench conftest.py setup.py
	$(BIN)/ruff check --fix kube_event_watcher tests bench conftest.py setup.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build $(MANIFEST)
	find kube_event_watcher -name '*.so' -delete
