# Two commands on a fresh machine:
#   make run    set up, create ./arka-client if missing, print a dev token once, serve on :8080
#   make test   set up and run the whole test suite (pytest, then the Docker container test)
VENV    ?= .venv
PYTHON  ?= python3
CLIENT  ?= ./arka-client
PORT    ?= 8080
BIN      = $(VENV)/bin

.PHONY: setup run test test-python test-container image lint bench lock clean

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

run: setup
	ARKA_CLIENT_DIR=$(CLIENT) PORT=$(PORT) BIN=$(BIN) scripts/run-local.sh

test: test-python test-container

test-python: setup
	$(BIN)/ruff check arka_git_hcm tests bench reliability
	$(BIN)/mypy arka_git_hcm tests reliability
	$(BIN)/pytest -q -n 2 -p no:cacheprovider --cov --cov-report= --cov-fail-under=85

test-container:
	scripts/container-test.sh

# the Docker image, and what it needs on this machine (engine, base image without a registry)
image:
	scripts/docker-image.sh

lint: setup
	$(BIN)/ruff check arka_git_hcm tests bench reliability
	$(BIN)/ruff format --check arka_git_hcm tests bench reliability
	$(BIN)/mypy arka_git_hcm tests reliability

bench: setup
	$(BIN)/python bench/bench_store.py --quick
	$(BIN)/python bench/bench_http.py --quick

lock: setup
	{ echo "# Tested versions (pip freeze of the dev venv). Makefile and Dockerfile install with -c this file"; \
	  echo "# so builds are reproducible; pyproject.toml keeps the supported ranges. Refresh: make lock"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -e '^-e' -e '^py-spy' -e ' @ '; } > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
