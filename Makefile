# trackside: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# On a GPU host: `make venv ONNXRUNTIME=gpu` (onnxruntime-gpu, with the CUDA provider).
ONNXRUNTIME ?= cpu

.PHONY: venv demo fleet fleet-down test test-unit lint bench clean

venv: $(STAMP)

# Re-install when pyproject.toml changes; the stamp records the last good install.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# The two builds install one module: the CPU one would shadow the GPU one.
	@if [ "$(ONNXRUNTIME)" = gpu ]; then $(PY) -m pip uninstall --quiet -y onnxruntime; fi
	$(PY) -m pip install --quiet -e '.[$(ONNXRUNTIME),train,test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m scripts.demo $(ARGS)

# A fleet on this machine: three Ray nodes, an agent each, the controller on the head.
fleet: $(STAMP)
	$(PY) -m scripts.fleet up --nodes 3

fleet-down: $(STAMP)
	$(PY) -m scripts.fleet down

test: lint
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

BENCHES := router_overhead agent_cost console drift fleet judge_sim batch

bench: $(STAMP)
	@for b in $(BENCHES); do echo "== $$b"; $(PY) -m scripts.bench.$$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
