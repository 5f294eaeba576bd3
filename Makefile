# Two commands do everything on a fresh machine:  `make run` (the local stack) and `make test` (the suite).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL_DIR ?= build/model
# The checkpoint to build (a hub id or a save_pretrained directory); empty: the build's default, DEFAULT_SOURCE in
# layer/settings.py.
SOURCE ?=
# torch is a build-time dependency only; the CPU wheel first, else a plain `torch` pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: run ui test lint unit bench soak mutation model dev-model image venv scanners lock clean

venv: $(VENV)/.installed
# constraints.txt pins the versions the suite last passed with (a fresh resolve of this many packages
# backtracks for minutes and may pick older releases).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[build,bench,dev]"
	touch $@

# checkov, bandit and pip-audit in a venv of their own (checkov's pins would fight the project's).
SCAN_VENV := .venv-scan
scanners: $(SCAN_VENV)/.installed
$(SCAN_VENV)/.installed: infra/ci/scanners.txt
	test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/pip install --quiet -r infra/ci/scanners.txt
	touch $@

# Mutation testing (not in make test: ~an hour on 2 cores). Its own venv: mutmut's TUI needs a newer rich than
# aws-sam-cli allows; the fast suite needs no torch. The model the engine tests load is built once, by make model.
MUT_VENV := .venv-mutation
$(MUT_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(MUT_VENV)/bin/python || $(PYTHON) -m venv $(MUT_VENV)
	$(MUT_VENV)/bin/pip install --quiet --upgrade pip
	$(MUT_VENV)/bin/pip install --quiet -c constraints.txt -e . pytest pytest-timeout hypothesis "moto[server]" \
	  scikit-learn requests transformers
	$(MUT_VENV)/bin/pip install --quiet mutmut==3.8.1 "rich>=14.2"
	touch $@
mutation: $(MUT_VENV)/.installed dev-model
	rm -rf mutants
	CLIP_LAMBDA_TEST_MODEL_DIR=$(abspath $(MODEL_DIR)) $(MUT_VENV)/bin/mutmut run --max-children 2 || true
	$(MUT_VENV)/bin/python bench/mutation_report.py > bench/results/mutation.md
	cat bench/results/mutation.md

# The image's exact package set, resolved from pyproject.toml under constraints.txt.
lock: venv
	$(BIN)/python infra/image/lambda_requirements.py --lock > infra/image/lambda-requirements.lock

# The model directory for a deploy: the checkpoint (SOURCE: a hub id or a save_pretrained dir; default the
# hub's openai/clip-vit-base-patch32), or a failure: never an untrained stand-in.
model: $(MODEL_DIR)/manifest.json
$(MODEL_DIR)/manifest.json: | venv
	$(BIN)/clip-lambda build-model $(if $(SOURCE),--source "$(SOURCE)") --out $(MODEL_DIR)

# A model for local work (soak, mutation, bench): the checkpoint, or, offline, random-init (loudly labelled).
dev-model: | venv
	test -f $(MODEL_DIR)/manifest.json || $(BIN)/clip-lambda build-model $(if $(SOURCE),--source "$(SOURCE)") \
	  --fallback-source random-init --out $(MODEL_DIR)

# The local stack builds the model first if it is missing, falling back to random-init offline (loudly).
run: venv
	$(BIN)/clip-lambda local --model $(MODEL_DIR) $(if $(SOURCE),--source "$(SOURCE)")

# The gallery against a running local stack (make run starts one and prints its own gallery URL).
ui: venv
	$(BIN)/clip-lambda ui

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layer handler infra bench

test: venv scanners lint
	$(BIN)/python -m pytest

unit: venv
	$(BIN)/python -m pytest tests/layer/test_decode.py tests/layer/test_preprocess.py tests/layer/test_session.py \
	  tests/layer/test_errors.py tests/layer/test_limits.py tests/layer/test_embedding.py tests/layer/test_tags.py tests/handler

bench: venv dev-model
	$(BIN)/clip-lambda bench --model $(MODEL_DIR)

# 10,000 S3 events with faults through the local stack (the CI size, 500, runs in make test).
soak: venv dev-model
	$(BIN)/python -m bench.soak --model $(MODEL_DIR) --events 10000

# The Lambda image from the public base (needs a registry); tests build it from a local debootstrap base.
# ARCH=arm64 builds the Graviton image (on an x86 host through QEMU: infra/ci/qemu-binfmt.sh registers it).
ARCH ?= x86_64
DOCKER_PLATFORM := linux/$(if $(filter arm64,$(ARCH)),arm64,amd64)
image: venv model
	if [[ "$(ARCH)" == arm64 && "$$(uname -m)" != aarch64 ]]; then bash infra/ci/qemu-binfmt.sh; fi
	eval "$$(bash infra/ci/docker-engine.sh start)" && \
	  docker build --platform $(DOCKER_PLATFORM) -f infra/image/Dockerfile --build-arg MODEL_DIR=$(MODEL_DIR) \
	    -t clip-lambda:latest-$(ARCH) .

clean:
	rm -rf $(VENV) $(SCAN_VENV) $(MUT_VENV) mutants build .cache .aws-sam .pytest_cache .mypy_cache .ruff_cache
