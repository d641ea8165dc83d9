# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000
RUFF_CONFIG := $(shell $(PYTHON) -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(' '.join(\"--config '%s = %s'\" % kv for kv in c['tool:ruff'].items()))")

.PHONY: install run test test-fast lint evaluate bench clean

install: $(STAMP)

# insightface declares opencv-python (the GUI build), which would sit beside
# opencv-python-headless as a second cv2: install it without dependencies and
# provide the few packages it really imports through setup.cfg.
$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet -c constraints.txt --no-deps insightface
	touch $(STAMP)

run: $(STAMP)
	PORT=$(PORT) $(VENV)/bin/gunicorn -c service/gunicorn.conf.py service.wsgi:app

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check $(RUFF_CONFIG) .
	$(VENV)/bin/ruff format --check $(RUFF_CONFIG) .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
