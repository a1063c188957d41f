# Every target creates .venv on first use and installs the pinned packages (constraints.txt).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := serve,train,checks,pipelines,dev,bench

.PHONY: help venv test lint demo bench docker-test lock clean

help:
	@echo "make demo         synthesize data and run the whole flow locally (no AWS)"
	@echo "make test         lint + the test suite"
	@echo "make docker-test  build both images and run them for real"
	@echo "make bench        accuracy, serving and checks benchmarks (needs ../shared/data/freshretailnet)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench pipeline docker templates
	$(BIN)/ruff format --check src tests bench pipeline docker templates

test: lint
	$(BIN)/pytest -q

# Image tests (tests/test_docker.py): start dockerd when no engine answers, build the registry-free base image,
# build both images and run them. Where images can be pulled: make docker-test BASE_IMAGE=debian:bookworm-slim
BASE_IMAGE ?= local/debian:bookworm
docker-test: $(STAMP)
	docker/dockerd.sh start
	@if [ "$(BASE_IMAGE)" = "local/debian:bookworm" ]; then docker/local-base-image.sh "$(BASE_IMAGE)"; fi
	BASE_IMAGE="$(BASE_IMAGE)" $(BIN)/pytest -m docker -v tests/test_docker.py tests/sagemaker_local

demo: $(STAMP)
	$(BIN)/python -m forecaster.demo --workdir demo-output

bench: $(STAMP)
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/checks.py

lock:
	rm -rf /tmp/forecaster-lock && $(PYTHON) -m venv /tmp/forecaster-lock
	/tmp/forecaster-lock/bin/pip install -q -e ".[$(EXTRAS)]"
	(echo "# Exact versions of every package the dev venv resolves to (pip freeze). make uses it as a pip constraints file."; \
	 echo "# Regenerate deliberately: make lock"; /tmp/forecaster-lock/bin/pip freeze | grep -v '^-e') > constraints.txt

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
