# Indelible — the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ./data

.PHONY: run test lint typecheck layers pytest bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server,postgres,ui,sdk,alerts,dev]'
	touch $(STAMP)

## run: set up and start Indelible on SQLite under ./data
run: $(STAMP)
	$(BIN)/indelible run --data $(DATA)

## test: set up, lint, type-check, check layers, run the whole suite
test: lint typecheck layers pytest

lint: $(STAMP)
	$(BIN)/ruff check indelible tests bench
	$(BIN)/ruff format --check indelible tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) chromium
	$(BIN)/coverage run --branch --source=indelible -m pytest -q
	@# core/ must keep full branch coverage; the report is shown only when it does not,
	@# so pytest's summary stays the last line of a passing run.
	@$(BIN)/coverage report --include='indelible/core/*' --fail-under=100 --skip-covered \
		> .coverage-report.txt 2>&1 || (cat .coverage-report.txt; exit 1)

## chromium: Debian's Chromium for the web UI's browser tests, installed when missing and
## apt-get is usable as root; otherwise those tests skip (and fail under CI=true)
.PHONY: chromium
chromium:
	@if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
			|| echo "chromium could not be installed: the browser tests will say so"; \
	else echo "no chromium and no root apt-get: the browser tests will say so"; fi

## bench: side-by-side benchmarks against the peers named in the issues
bench: $(STAMP)
	$(BIN)/python -m bench

## soak: the crash suite with many more kills
soak: $(STAMP)
	INDELIBLE_CRASH_KILLS=500 $(BIN)/pytest -q tests/test_crash.py
	INDELIBLE_SDK_KILLS=200 $(BIN)/pytest -q tests/sdk/test_kill.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
