# Two entry points for a fresh machine (see README): `make run` and `make test`.
# Both create .venv and install the project into it first (again only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest dialogs bench messages check-messages

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/flowbot run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

# Dialog scripts (docs/maintainers.md): every script in the served flow folders' tests/.
dialogs: $(STAMP)
	$(BIN)/flowbot test

# The peer frameworks of the engine benchmark come from the bench extra, installed only here.
$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks.engine

# Python messages: refresh the template and merge it into every language's catalog (docs/maintainers.md).
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --sort-output -o engine/locale/flowbot.pot .
	$(BIN)/pybabel update -i engine/locale/flowbot.pot -d engine/locale -D flowbot --no-fuzzy-matching --ignore-obsolete

# The catalog check alone: every marked message translated in every language (not fuzzy, same placeholders),
# and no English-only text for a person outside the catalog (both also run in `make test`).
check-messages: $(STAMP)
	$(BIN)/pytest -q tests/engine/test_i18n.py tests/engine/test_i18n_coverage.py
