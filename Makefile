# Entry points for people and CI. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SPARSEG := $(VENV)/bin/sparseg

.PHONY: setup demo test test-quick bench demo-weights expected clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@# setuptools announces every editable install with an information block that asks nothing of us
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet --no-deps -e .
	touch $@

SAMPLES := $(wildcard test/*/input)
DEMO_WEIGHTS := model_weights/sparseg-demo.safetensors

# The main job on the bundled sample case: the container's entry point, /input layout -> mask; then the same
# case through `sparseg predict --report`: runs/demo-sample/report.html, a page to look at.
demo: setup
	$(PY) process.py --input test/MGHNICU_901-VISIT_01/input --output runs/demo-sample --device cpu
	$(SPARSEG) predict --data test/MGHNICU_901-VISIT_01/input --out runs/demo-sample --report --device cpu

# Rebuild the demo weights from scratch: 80 synthetic cases, demo config, fold 0 (about an hour on 2 CPU cores).
demo-weights: setup
	$(SPARSEG) synth --out data/demo80 --cases 80 --seed 1
	$(SPARSEG) train --data data/demo80 --config resources/configs/demo.json --out runs/demo --fold 0
	cp runs/demo/best.safetensors $(DEMO_WEIGHTS)
	cp runs/demo/best.json model_weights/sparseg-demo.json

# The sample cases' expected outputs with the weights that will ship (files or folders; default the demo
# weights), into test/<case>/expected, or into $(EXPECTED)/<case> when EXPECTED is given (for test.sh --expected):
#   make expected WEIGHTS="runs/cv/fold*/final.safetensors" EXPECTED=runs/expected
WEIGHTS ?= $(DEMO_WEIGHTS)
EXPECTED ?=
expected: setup
	for input in $(SAMPLES); do \
		case_dir=$$(dirname $$input); \
		out=$${case_dir}/expected; [ -z "$(EXPECTED)" ] || out=$(EXPECTED)/$$(basename $$case_dir); \
		$(PY) process.py --input $$input --output $$out --weights $(WEIGHTS) --device cpu || exit 1; \
	done

# The linter (settings in pyproject.toml), then the test suite in two processes (pytest-xdist; one thread each, a
# test file per process at a time), the 25 slowest tests listed. test-quick: the same without the tests marked slow
# (training, quantizing, exporting, many cases): the inner loop.
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile
test: setup
	$(VENV)/bin/ruff check .
	$(PYTEST) --durations=25

test-quick: setup
	$(VENV)/bin/ruff check .
	$(PYTEST) -m "not slow"

bench: setup
	$(PY) bench/scoring.py

clean:
	rm -rf data/sample runs/sample-baseline .pytest_cache
