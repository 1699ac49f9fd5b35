# Two commands do all the set-up on a fresh machine: `make up` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Packages type-checked with mypy --strict: all of them.
TYPED := core api deployments flows tasks migrations cli mailboxes tradelane

.PHONY: up test lint bench bench-quick screenshots test-servers runtime-tools clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	# pyas2lib pins oscrypto==1.3.0, which cannot parse OpenSSL 3.0.10+'s version and fails at import.
	# elements-oscrypto ships the same `oscrypto` package with the fix: swap it in (README, "AS2").
	$(BIN)/python -m pip uninstall -q -y oscrypto
	$(BIN)/python -m pip install -q --no-deps --force-reinstall -c constraints.txt elements-oscrypto
	$(BIN)/python -c "import pyas2lib"
	touch $@

## Run the whole system on embedded defaults (API :8080, Prefect UI :4200).
up: $(STAMP) runtime-tools
	$(BIN)/tradelane up

## The programs `up` runs besides Python (gpg for PGP).
runtime-tools:
	bash scripts/install-runtime.sh

## Install what the tests need, then run them.
# One process by default. TEST_WORKERS=2 runs two pytest-xdist workers (tests/xdist_groups.py keeps
# each session `up` on one): 22 min instead of 29 on CI's 2 cores, but some tests still fail there
# (tests/as2/test_send.py, tests/notify/test_rules_up.py); see the README.
TEST_WORKERS ?= 0
test: $(STAMP) runtime-tools test-servers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict $(TYPED)
	$(BIN)/pytest -q --durations=30 -n $(TEST_WORKERS) --dist loadgroup

test-servers:
	bash scripts/install-test-servers.sh

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy --strict $(TYPED)

## Benchmarks: every issue-17 path against its anchor and the machine's limits, measured in the same
## run, then one table (bench/all.py). Full sizes take tens of minutes; QUICK=1 (or bench-quick): a
## few minutes at small sizes, a check that everything runs rather than a measurement.
bench: $(STAMP)
	$(BIN)/python -m bench.all $(if $(QUICK),--quick)

bench-quick: $(STAMP)
	$(BIN)/python -m bench.all --quick

## The README's pictures (docs/screenshots/*.png) from a seeded `up` in Chromium; not part of `make test`.
screenshots: $(STAMP)
	$(BIN)/python -m tests.web.screenshots --out docs/screenshots

clean:
	rm -rf $(VENV) .tradelane .pytest_cache
