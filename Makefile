# The template's own tasks. `make test` sets up everything it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pytest arguments: `make test PYTEST_ARGS="-v -k hooks"`.
PYTEST_ARGS ?=
# `make bench`: interleaved passes and A1's subscribers (A3 has 4x, B 2x); QUICK=1 for a smoke run.
PASSES ?= 3
SUBSCRIBERS ?= 500
QUICK ?=
BENCH_VENV ?= .cache/bench-venv
UV ?= uv
# The command as typed, with only the variables given on the command line, for bench/RESULTS.md.
BENCH_COMMAND = $(strip make bench$(foreach v,PASSES SUBSCRIBERS QUICK,$(if $(filter command line,$(origin $(v))), $(v)=$($(v)))))

.PHONY: test render lint locks clean bench

$(BIN)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

test: $(BIN)/.installed  ## lint the template's own code, render every combination, run every check
	$(BIN)/ruff check hooks tests tools bench local_extensions.py
	$(BIN)/ruff format --check hooks tests tools bench local_extensions.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)

render: $(BIN)/.installed  ## interactive: answer the prompts, get a project in ./out
	$(BIN)/cookiecutter --output-dir out .

lint: $(BIN)/.installed
	$(BIN)/ruff check hooks tests tools bench local_extensions.py
	$(BIN)/ruff format --check hooks tests tools bench local_extensions.py

locks: $(BIN)/.installed  ## refresh every combination's uv.lock after a pyproject.toml change (UPGRADE=1: newest versions)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/lock.py $(if $(UPGRADE),--upgrade)

$(BENCH_VENV)/.installed: bench/requirements.txt
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(BENCH_VENV)
	VIRTUAL_ENV=$(abspath $(BENCH_VENV)) $(UV) pip install --quiet -r bench/requirements.txt
	touch $@

bench: $(BENCH_VENV)/.installed  ## measure the service against its peers; writes bench/RESULTS.md and the docs' tables
	$(BENCH_VENV)/bin/python bench/run.py --passes $(PASSES) --subscribers $(SUBSCRIBERS) $(if $(QUICK),--quick) \
		--update-docs --command "$(BENCH_COMMAND)"

clean:
	rm -rf $(VENV) out .cache
