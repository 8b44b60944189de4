# VoxGate developer commands. `make help` lists them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/voxgate.yaml
VOSK_MODELS_URL := https://alphacephei.com/vosk/models
VOSK_MODELS := vosk-model-small-en-us-0.15 vosk-model-small-cn-0.22

.DEFAULT_GOAL := help
.PHONY: help install extensions system-packages run demo test check format bench models clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(BIN)/voxgate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/voxgate extensions ## create .venv and install VoxGate with its test tools

extensions: $(BIN)/voxgate ## build the C extensions of the media path and SIP parsing in place (gcc, Python headers)
	@# A venv of Python 3.12 or newer has no setuptools of its own. The build reports on
	@# stderr, so that `make demo > summary.json` keeps only the summary on stdout.
	@$(BIN)/python -c 'import setuptools' 2>/dev/null || $(BIN)/pip install --quiet setuptools >&2
	@$(BIN)/python scripts/build_extensions.py >&2

system-packages: ## install the Debian packages the tests need (redis, SIPp, baresip, Chromium)
	sh scripts/install-system-packages.sh

run: install ## run one node on the default settings (SIP 5060/udp, HTTP 8080)
	$(BIN)/voxgate serve --config $(CONFIG)

demo: install ## run five callers through the contact center to a Chromium agent; print a JSON summary (root)
	@PYTHONPATH=. $(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: system-packages install ## set up everything and run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: install ## ruff lint, ruff format check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: system-packages install ## run the benchmarks under bench/ (slow; prints ratios)
	@for script in bench/*.py; do \
		[ -e "$$script" ] || { echo "no benchmarks in bench/"; break; }; \
		echo "== $$script"; PYTHONPATH=. $(BIN)/python $$script || exit 1; \
	done

models: ## download the small English and Chinese Vosk models into asr_models/
	@mkdir -p asr_models
	@for model in $(VOSK_MODELS); do \
		if [ -d asr_models/$$model ]; then echo "$$model: present"; continue; fi; \
		echo "$$model: downloading"; \
		curl -fL --retry 3 -o asr_models/$$model.zip $(VOSK_MODELS_URL)/$$model.zip && \
		(cd asr_models && $(PYTHON) -m zipfile -e $$model.zip . && rm $$model.zip) || exit 1; \
	done

clean: ## remove caches and build output (keeps .venv and asr_models)
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info var test-artifacts
	rm -f media/_rtpcore.*.so signaling/sip/_sipcore.*.so
