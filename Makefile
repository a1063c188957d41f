# Every target creates .venv on first use and installs the pinned packages (constraints.txt).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := serve,train,checks,excel,pipelines,dev,bench,docs

.PHONY: help venv test test-fast lint docs demo bench bench-docker docker-test lock clean airflow-venv airflow-test

help:
	@echo "make demo         synthesize data and run the whole flow locally (no AWS)"
	@echo "make test         the full gate: lint + docs + every test (docker and slow ones included)"
	@echo "make test-fast    unit tests only (-m 'not slow and not docker'): the edit-test loop, ~1-2 min"
	@echo "make lint         ruff check + ruff format --check"
	@echo "make docs         build the docs site into .cache/site (mkdocs --strict: a broken link or anchor fails)"
	@echo "make docker-test  build both images, run them for real and through the SageMaker SDK (local mode)"
	@echo "make bench        accuracy, serving and checks benchmarks (needs ../shared/data/freshretailnet)"
	@echo "make bench-docker image build times, sizes, start to first /ping (needs a Docker engine)"
	@echo "make venv         create .venv with the package and its extras (the other targets do it when needed)"
	@echo "make airflow-venv create .venv-airflow (Airflow and its providers) for the DAG tests"
	@echo "make airflow-test run every DAG with dag.test() in .venv-airflow"
	@echo "make lock         re-resolve constraints.txt, the pinned versions of the dev venv (needs PyPI)"
	@echo "make clean        remove the virtualenvs, demo-output and the tool caches"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench pipeline docker templates
	$(BIN)/ruff format --check src tests bench pipeline docker templates

# The docs site (docs/, mkdocs.yml): --strict turns a broken link, a link outside docs/ or a missing anchor into
# an error. NO_MKDOCS_2_WARNING silences Material's banner about its successor.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: lint docs
	$(BIN)/pytest -q
	$(MAKE) airflow-test

# Airflow DAGs (pipeline/airflow/, issue 13): Airflow's pins conflict with the SageMaker SDK's (fastapi), so Airflow
# gets its own venv with forecaster's core + the [airflow] extra, pinned by constraints-airflow.txt (a pip freeze:
# Airflow's own constraints files are on GitHub). The local backend runs the main venv's forecaster CLI.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
$(AIRFLOW_STAMP): pyproject.toml constraints-airflow.txt
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install -q -c constraints-airflow.txt -e ".[airflow]" "moto[s3,sagemaker]" pytest
	@touch $@

airflow-venv: $(AIRFLOW_STAMP)

airflow-test: $(STAMP) $(AIRFLOW_STAMP)
	FORECASTER_CLI=$(abspath $(BIN))/forecaster $(AIRFLOW_VENV)/bin/pytest -q tests/dags

# The edit-test loop: no lint, no end-to-end (slow) and no image (docker) tests. `make test` stays the gate.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not docker"

# Image tests (tests/test_docker.py) and SDK local mode (tests/sagemaker_local: the SageMaker SDK runs the images
# through docker-compose, the pipelines under LocalPipelineSession): start dockerd when no engine answers, build the
# registry-free base image, build both images and run them.
# Where images can be pulled: make docker-test BASE_IMAGE=debian:bookworm-slim
BASE_IMAGE ?= local/debian:bookworm
docker-test: $(STAMP)
	docker/dockerd.sh start
	@if [ "$(BASE_IMAGE)" = "local/debian:bookworm" ]; then docker/local-base-image.sh "$(BASE_IMAGE)"; fi
	BASE_IMAGE="$(BASE_IMAGE)" $(BIN)/pytest -m docker -v tests/test_docker.py tests/sagemaker_local

demo: $(STAMP)
	$(BIN)/python -m forecaster.cli.demo --workdir demo-output

bench: $(STAMP)
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/checks.py

bench-docker: $(STAMP)
	$(BIN)/python bench/docker.py

lock:
	rm -rf /tmp/forecaster-lock && $(PYTHON) -m venv /tmp/forecaster-lock
	/tmp/forecaster-lock/bin/pip install -q -e ".[$(EXTRAS)]"
	(echo "# Exact versions of every package the dev venv resolves to (pip freeze). make uses it as a pip constraints file."; \
	 echo "# Regenerate deliberately: make lock"; /tmp/forecaster-lock/bin/pip freeze | grep -v '^-e') > constraints.txt

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) demo-output .pytest_cache .ruff_cache
