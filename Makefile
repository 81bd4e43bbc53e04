# Every target sets itself up: `make install` creates .venv and installs the package
# with every extra (all) and the demo/test/bench tools; it does nothing when setup.py has
# not changed since the last install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PERF_STAMP := .venv-perf/.installed

.PHONY: install demo lint test test-all bench bench-full simd-env clean

install: $(STAMP) $(PERF_STAMP)

$(STAMP): setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,demo,test,bench]'
	touch $(STAMP)

# Triton's perf_analyzer for the KServe tests and benchmark, in a venv of its own (it needs
# tritonclient 2.45.0's wheel; the engine's .venv keeps a newer tritonclient). As root it
# apt-installs libb64-0d when missing.
$(PERF_STAMP): bench/make_perf_env.sh $(STAMP)
	bash bench/make_perf_env.sh
	touch $(PERF_STAMP)

demo: install
	$(BIN)/python -m engine.demo

# The import direction (.importlinter) and the ruff rule set (ruff.toml) are part of the tests.
lint: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check engine bench tests

test: lint
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-all: lint
	$(BIN)/python -m pytest -q

bench: install simd-env
	$(BIN)/python -m bench --quick
	$(BIN)/python -m bench.update_readme

bench-full: install simd-env
	$(BIN)/python -m bench --full
	$(BIN)/python -m bench.update_readme

# pillow-simd is a benchmark baseline only: it replaces PIL and its resize is not
# bit-identical to Pillow's, so it lives in its own venv. A failed build is reported
# by the benchmark as a skipped baseline, never as an install failure.
simd-env:
	-bash bench/make_simd_env.sh

clean:
	rm -rf $(VENV) .venv-simd .venv-perf *.egg-info .pytest_cache
