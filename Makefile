# Entry points for people and CI. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SPARSEG := $(VENV)/bin/sparseg

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The main job on the sample data: synthetic cases, the Z_ADC < -2 baseline, challenge scoring.
demo: setup
	$(SPARSEG) synth --out data/sample --cases 8 --seed 0
	$(SPARSEG) baseline --data data/sample --out runs/sample-baseline/masks
	$(SPARSEG) evaluate --gt data/sample --pred runs/sample-baseline/masks --out runs/sample-baseline/scores

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) bench/scoring.py

clean:
	rm -rf data/sample runs/sample-baseline .pytest_cache
