# One entry point for people and CI. `make run` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed  ## watch the current kubeconfig context; ARGS="-c config.yaml" for a config
	$(BIN)/kube-event-watcher run $(ARGS)

test: $(BIN)/.installed  ## the whole suite: unit, integration, e2e (real kube-apiserver + etcd)
	$(BIN)/python -m pytest $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff format --check watcher tests bench
	$(BIN)/ruff check watcher tests bench
	$(BIN)/mypy watcher
	$(BIN)/lint-imports

format: $(BIN)/.installed
	$(BIN)/ruff format watcher tests bench
	$(BIN)/ruff check --fix watcher tests bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
