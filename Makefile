# The two commands a newcomer needs: `make demo` and `make test`. Everything else is set-up they
# call, or a part of them: `make check` (the quick loop), `make build`, `make dist`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

# The Lambda runtime is python3.13, and `sam build` needs a python3.13 on PATH: the venv provides it.
PYTHON313 ?= $(shell for p in "$$(PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null)" $$(ls -1d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 2>/dev/null) python3.13; do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { command -v "$$p"; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
export PATH := $(CURDIR)/$(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: test check build dist demo local samlocal bench bench-ts lint typecheck bandit template checkov pytest iam ts lock clean

$(BIN)/.installed: requirements/dev.txt layers/shared/requirements.txt
	@test -n "$(PYTHON313)" || { echo "python3.13 not found (install it, or set PYTHON313=/path/to/python3.13)"; exit 1; }
	@echo "Setting up $(VENV) (the pinned tools, SAM CLI included): a few minutes, the first time only"
	test -x $(BIN)/python3.13 || $(PYTHON313) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements/checkov.txt
	touch $@

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

bandit: $(BIN)/.installed
	$(BIN)/bandit -q -c pyproject.toml -r layers functions local ops

# sam build runs from the venv, whose python3.13 is first on PATH (exported above): SAM checks
# that python3.13 runs, and a pyenv shim without a 3.13 selected fails its "Binary validation".
SAM_BUILD := $(BIN)/sam build --cached --parallel

template: $(BIN)/.installed
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --region $(AWS_DEFAULT_REGION)
	$(SAM_BUILD)

# `sam build` into .aws-sam/, for `sam deploy` and `sam local`: wherever `make demo` works.
build: $(BIN)/.installed
	$(SAM_BUILD)

checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --framework cloudformation --file template.yaml --skip-download

pytest: $(BIN)/.installed
	$(BIN)/python -m pytest

# The security questions of docs/iam-answers.md, answered by an IAM policy engine (Node 20+).
IAM_DIR := tests/template/iam
iam: $(BIN)/.installed
	npm ci --prefix $(IAM_DIR) --no-audit --no-fund --silent
	mkdir -p $(IAM_DIR)/build
	$(BIN)/python -m tests.template.iam_questions $(IAM_DIR)/build/questions.json
	cd $(IAM_DIR) && node --test

test: lint typecheck bandit template checkov pytest iam ts samlocal

# The quick loop before a commit: no Docker, no `sam build`, no Node; a few minutes.
# `make test` runs all of it and more (template, checkov, IAM engine, TypeScript client, sam local).
check: lint typecheck bandit pytest

# `sam local invoke` / `start-api` of both functions in SAM's Lambda container, checked by
# tests/samlocal/. With a Docker engine that answers (`docker info`) it uses that one; without,
# it needs root and runs its own dockerd in a network namespace of its own.
samlocal: $(BIN)/.installed
	bash local/samlocal/run.sh

# The TypeScript client (clients/typescript): install from its lockfile, then build, lint,
# typecheck (strict tsc over sources, tests and benchmark) and test (against the real broker,
# started by the tests' launcher with this venv's Python).
TS := clients/typescript
$(TS)/node_modules/.installed: $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

ts: $(BIN)/.installed $(TS)/node_modules/.installed
	cd $(TS) && npm run --silent lint
	cd $(TS) && PYTHON=$(CURDIR)/$(BIN)/python npm test

bench-ts: $(BIN)/.installed $(TS)/node_modules/.installed
	cd $(TS) && PYTHON=$(CURDIR)/$(BIN)/python npm run --silent bench

# The two caller clients as files to install elsewhere: the npm tarball and the Python wheel.
DIST ?= dist
dist: $(BIN)/.installed $(TS)/node_modules/.installed
	mkdir -p $(DIST) && rm -f $(DIST)/killb-broker-client-*.tgz $(DIST)/killb_broker_client-*.whl
	cd $(TS) && npm pack --silent --pack-destination $(abspath $(DIST)) >/dev/null
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation ./clients/python -w $(DIST)
	@ls -1 $(DIST)

demo: $(BIN)/.installed
	$(BIN)/python local/demo.py

# The local stack, kept up until Ctrl-C; LOCAL_HOST=<docker0 address> for `sam local` on Linux.
# Unset or empty: loopback (local/stack.py's own default).
LOCAL_HOST ?=
local: $(BIN)/.installed
	$(BIN)/python local/stack.py $(if $(strip $(LOCAL_HOST)),--host $(LOCAL_HOST))

bench: $(BIN)/.installed
	$(BIN)/python -m bench

# Re-pin requirements/dev.txt (from requirements/dev.in) and requirements/checkov.txt (needs PyPI).
lock:
	rm -rf .venv-lock && $(PYTHON313) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/dev.in
	{ echo "# Generated from requirements/dev.in with pip freeze on Python 3.13 (make lock). Do not edit by hand."; \
	  .venv-lock/bin/pip freeze --exclude pip --exclude setuptools --exclude wheel; } > requirements/dev.txt
	rm -rf .venv-lock
	$(PYTHON313) -m venv .venv-lock && .venv-lock/bin/pip install --quiet checkov==3.3.30
	{ echo "# checkov pins a boto3 that clashes with aws-sam-cli's, so it gets a virtualenv of its own."; \
	  echo "# The whole tree, frozen from a venv that installed checkov==3.3.30 (make lock)."; \
	  .venv-lock/bin/pip freeze --exclude pip --exclude setuptools --exclude wheel; } > requirements/checkov.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache dist
	rm -rf $(TS)/node_modules $(TS)/dist $(TS)/build
