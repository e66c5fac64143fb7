# The template's own tasks. `make test` sets up everything it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pytest arguments: `make test PYTEST_ARGS="-v -k hooks"`.
PYTEST_ARGS ?=

.PHONY: test render lint locks clean

$(BIN)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

test: $(BIN)/.installed  ## lint the template's own code, render every combination, run every check
	$(BIN)/ruff check hooks tests tools local_extensions.py
	$(BIN)/ruff format --check hooks tests tools local_extensions.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)

render: $(BIN)/.installed  ## interactive: answer the prompts, get a project in ./out
	$(BIN)/cookiecutter --output-dir out .

lint: $(BIN)/.installed
	$(BIN)/ruff check hooks tests tools local_extensions.py
	$(BIN)/ruff format --check hooks tests tools local_extensions.py

locks: $(BIN)/.installed  ## refresh every combination's uv.lock after a pyproject.toml change (UPGRADE=1: newest versions)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/lock.py $(if $(UPGRADE),--upgrade)

clean:
	rm -rf $(VENV) out .cache
