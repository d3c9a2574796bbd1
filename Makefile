# Bulwark: `make demo` runs the main job locally, `make test` runs the tests.
# Both create or reuse .venv (hash-pinned Python packages) and node_modules (pinned CDK CLI).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A supported Node (package.json pins node-linux-*@24 LTS) before the system's, for the CDK CLI
# and for jsii inside the app (`npx` puts node_modules/.bin first on its own, too).
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
# `guard` is importable as it is inside Lambda; `local` and `bench` from the repository root.
export PYTHONPATH := $(CURDIR):$(CURDIR)/lambdas

.PHONY: setup demo dashboard test test-unit test-functional test-infra test-e2e lint format-check \
	bench-bucket bench-claude bench-cold-start deploy clean lock docs

WHEELS := .cache/wheels-arm64
## The browser test and the demo's screenshot drive Debian's chromium through Playwright
## (`executable_path`; Playwright's own browser download is never used). CI runs as root.
## (Defined before `setup`: make expands a rule's prerequisites when it reads the rule.)
CHROMIUM := /usr/bin/chromium
## checkov in its own venv: its pins would downgrade boto3 in ours. The infra tests run it.
CHECKOV_VENV := .venv-checkov
## mkdocs and mkdocs-material in their own venv, so `make test-unit` still needs only .venv.
DOCS_VENV := .venv-docs

## What synth and deploy need: the Python venv, the CDK CLI and the Lambda asset's wheels.
SYNTH := $(VENV)/.installed node_modules/.installed $(WHEELS)/.done

setup: $(SYNTH) $(CHECKOV_VENV)/.installed $(DOCS_VENV)/.installed $(CHROMIUM)

$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium; else sudo apt-get update -qq && \
		sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi

## Lambda dependencies for the asset (arm64, Python 3.12), hash-checked; synth installs from
## here with --no-index, so synth makes no network call.
$(WHEELS)/.done: requirements/lambda.txt $(VENV)/.installed
	mkdir -p $(WHEELS)
	$(PY) -m pip download --quiet --quiet --disable-pip-version-check --only-binary=:all: \
		--platform manylinux2014_aarch64 --python-version 3.12 --implementation cp \
		--require-hashes -r requirements/lambda.txt -d $(WHEELS)
	touch $@

$(VENV)/.installed: requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --quiet --disable-pip-version-check --require-hashes -r requirements/dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --quiet --disable-pip-version-check --require-hashes -r requirements/checkov.txt
	touch $@

$(DOCS_VENV)/.installed: requirements/docs.txt
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --quiet --disable-pip-version-check --require-hashes -r requirements/docs.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## The main job on the embedded default: cdk deploy into local AWS, then the agent fleet
## against the Claude emulator at Tier-1 limits; report, charts and alarms in out/demo
## (the dashboard screenshot is why it wants Chromium).
demo: $(SYNTH) $(CHROMIUM)
	$(PY) -m local.demo $(DEMO_ARGS)

## The deployed dashboard on a local page, from a saved run (default: the last demo's):
## DASHBOARD_ARGS="--run out/demo --port 8050 --screenshot out/demo/dashboard.png".
dashboard: $(VENV)/.installed $(CHROMIUM)
	$(PY) -m local.cloudwatch.dashboard $(DASHBOARD_ARGS)

## A real account: AWS credentials in the environment, context in cdk.json or CDK_ARGS.
deploy: $(SYNTH)
	npx cdk deploy --require-approval broadening $(CDK_ARGS)

## All tests, every tier, after the lint: the README's one command and CI's entry. Two pytest
## processes at once (tests/run_parallel.py): the tests on the real clock on TEST_WALL_WORKERS
## pytest-xdist workers, the rest at nice 10 on TEST_CPU_WORKERS. A module's tests stay on one
## worker, and all tests of the session synths on one, so each deploy, local server, emulator
## and synth is set up once.
TEST_CPU_WORKERS ?= 3
TEST_WALL_WORKERS ?= 1
test: setup lint
	$(PY) -m tests.run_parallel --cpu-workers $(TEST_CPU_WORKERS) \
		--wall-workers $(TEST_WALL_WORKERS) $(PYTEST_ARGS)

## One tier at a time. Unit: pure code, no I/O, needs only the venv (seconds).
test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

## Functional: the runtime against local AWS (moto's server) and the Claude emulator.
test-functional: $(VENV)/.installed
	$(PY) -m pytest tests/functional $(PYTEST_ARGS)

## Infra: the synthesized template, the IAM evaluator, checkov, the dashboard page in Chromium.
test-infra: $(SYNTH) $(CHECKOV_VENV)/.installed $(DOCS_VENV)/.installed $(CHROMIUM)
	$(PY) -m pytest tests/infra $(PYTEST_ARGS)

## End to end: cdk deploy into local AWS and the demo.
test-e2e: $(SYNTH)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

## ruff with the rules in pyproject.toml. `format-check` reports what `ruff format` would
## change; it is not part of `make test` (the tree is not formatted by ruff).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

format-check: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .

## The documentation site (mkdocs.yml, docs/) into site/; --strict: a warning, a broken link
## or a broken anchor fails. The infra tier runs the same build (tests/infra/test_docs_site.py).
docs: $(DOCS_VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

bench-bucket: $(VENV)/.installed
	$(PY) -m bench.bucket_bench $(BENCH_ARGS)

bench-claude: $(VENV)/.installed
	$(PY) -m bench.claude_bench $(BENCH_ARGS)

## 3 processes x 8 threads against one tenant's $0.20 daily budget (one model, then two);
## writes per answered call with budgets off and on.
.PHONY: bench-budget
bench-budget: $(VENV)/.installed
	$(PY) -m bench.budget_bench $(BENCH_ARGS)

bench-cold-start: $(SYNTH)
	$(PY) -m bench.cold_start
	$(PY) -m bench.cold_fleet

## Re-resolve the hash-pinned locks after editing requirements/*.in. lambda.txt carries every
## published file's hash, so the arm64/cp312 wheels the asset needs verify too.
lock: $(VENV)/.installed
	$(PY) -m pip install --quiet pip-tools
	cd requirements && ../$(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras -o lambda.txt lambda.in
	cd requirements && ../$(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras -o dev.txt dev.in
	cd requirements && ../$(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras -o checkov.txt checkov.in
	cd requirements && ../$(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras -o docs.txt docs.in

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(DOCS_VENV) node_modules cdk.out .pytest_cache site
