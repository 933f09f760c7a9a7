# Two commands set up a fresh machine:  `make demo`  and  `make test`.
# Both create .venv in the repo root and install the pinned versions of constraints.txt.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench clean browser-test

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	# torch first and alone, pinned: on these machines pip takes the CPU wheel from local disk;
	# an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,baselines,neurogym]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/dynamo demo

lint: install
	$(BIN)/ruff check .

test: install lint
	# Triton's interpreter for the fused-kernel tests, unless a Triton (a CUDA torch's) is there.
	$(BIN)/python -c "import triton" 2>/dev/null || $(BIN)/python -m pip install -q -c constraints.txt -e ".[kernels]"
	$(BIN)/lint-imports
	$(BIN)/pip check
	$(BIN)/python -m pytest -q

# The browser test of report.html (tests/analysis/test_report_browser.py): Playwright drives
# Debian's Chromium, installed with apt-get (as root) when /usr/bin/chromium is missing.
# Never `playwright install`: it downloads a browser of its own, which a closed network refuses.
browser-test: install
	test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[browser]"
	$(BIN)/python -m pytest -q tests/analysis/test_report_browser.py

bench: install
	$(BIN)/python benchmarks/population_forward.py
	$(BIN)/python benchmarks/fixed_points.py
	$(BIN)/python benchmarks/eigenvalues.py
	$(BIN)/python benchmarks/per_member_work.py
	! $(BIN)/python -c "import triton" 2>/dev/null || $(BIN)/python benchmarks/kernel_registers.py
	test ! -d runs/demo/population || $(BIN)/python benchmarks/fixed_points.py --members
	$(BIN)/python benchmarks/population_training.py
	test -d runs/population/flipflop/population || $(BIN)/dynamo population fit --config configs/population/flipflop.yaml
	$(BIN)/python benchmarks/dynamo_fit.py --tag cpu
	$(BIN)/python benchmarks/data_path.py
	$(BIN)/python benchmarks/similarity.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
