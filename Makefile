# One entry point for people and CI. `make run` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run demo test lint format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed  ## watch the current kubeconfig context; ARGS="-c config.yaml" for a config
	@if [ -z "$(ARGS)" ] && [ -z "$$KUBECONFIG" ] && [ ! -f "$$HOME/.kube/config" ]; then \
		echo "make run: no kubeconfig found (\$$KUBECONFIG, ~/.kube/config): starting a local demo cluster instead."; \
		echo "          To watch your cluster: make run ARGS='--kubeconfig FILE' (or set KUBECONFIG)."; \
		exec $(BIN)/kube-event-watcher demo; \
	fi; \
	exec $(BIN)/kube-event-watcher run $(ARGS)

demo: $(BIN)/.installed  ## a local cluster (built from pinned Go modules) with broken workloads, watched
	$(BIN)/kube-event-watcher demo $(ARGS)

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
