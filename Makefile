# docroute: `make run` (set up, then extract sample_docs/ into ./out) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The CPU torch this project is tested with. A GPU user installs their CUDA torch into .venv first
# and passes CONSTRAINTS= (empty) so pip keeps it: see README "GPU".
CONSTRAINTS ?= constraints.txt
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.docroute-installed
OUT ?= out
# each set-up step prints one line; what pip, apt and the build print goes to this log
LOG := $(VENV)/setup.log
STEP := scripts/step.sh $(LOG)

.PHONY: setup system-deps run test bench lint clean

setup: system-deps $(STAMP)

system-deps:
	@$(STEP) "system packages (tesseract, poppler)" scripts/system_deps.sh

# torch first, pinned, so nothing later pulls a multi-GB CUDA build. unstructured-inference without
# its deps: they would pull timm -> PyPI torchvision, which breaks beside the CPU torch; what it needs
# at run time is in pyproject.toml.
$(STAMP): pyproject.toml constraints.txt
	@$(STEP) "virtual environment $(VENV)" sh -c 'test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)'
	@$(STEP) "pip" $(BIN)/python -m pip install --upgrade pip
	@$(if $(CONSTRAINTS),$(STEP) "torch (pinned by $(CONSTRAINTS))" $(BIN)/python -m pip install $(PIP_C) torch)
	@$(STEP) "docroute and its dependencies" $(BIN)/python -m pip install $(PIP_C) -e ".[dev]"
	@$(STEP) "unstructured-inference (without its dependencies)" \
		$(BIN)/python -m pip install $(PIP_C) --no-deps "unstructured-inference>=1.6.12,<2"
	@touch $(STAMP)

run: setup
	$(BIN)/docroute run sample_docs --out $(OUT)

test: setup
	@$(STEP) "test tools (chromium)" scripts/system_deps.sh test
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/throughput.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(OUT) .pytest_cache
