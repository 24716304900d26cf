# voxplane: `make run` serves every service on the embedded SQLite database;
# `make test` lints (ruff, buf), type-checks (mypy, set up in pyproject.toml), checks the contract
# against v1 (buf breaking) and runs the whole suite, the Node client's tests included.
# Both set up .venv first; `make test` also installs clients/node's packages (npm ci).
# `make edge` runs the real network's edge in front of it: Kamailio (and rtpengine) from the Debian packages
# `.ci/run` installs, on the same database (see the README's "Real network").
# `make cluster` runs docker-compose.yml's topology as local processes, without Docker: migrate once, then each
# service its own `voxplane serve` (Numbers twice) and the edge, on PostgreSQL (VOXPLANE_DATABASE_URL, else a
# `voxplane_cluster` database on the local server, made if missing), until Ctrl-C; CLUSTER_ARGS='--skip edge'
# leaves the edge out.
# `make lock` rewrites requirements.lock (what the Dockerfile installs, pinned with hashes) from pyproject.toml.
# `make fuzz` runs the fuzz test (tests/test_fuzz.py) at 1,000 requests per RPC and backend; `make test`
# runs it at VOXPLANE_FUZZ_EXAMPLES (200 by default).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE := clients/node
NODE_STAMP := $(NODE)/node_modules/.installed
BUF := $(NODE)/node_modules/.bin/buf
# The v1 contract as released: what `buf breaking` holds the protos to (see contract-baseline).
CONTRACT_BASELINE := protos/v1.binpb

.PHONY: run edge cluster lock test fuzz proto bench install clean contract-baseline

# /metrics at 9464 (the port OpenTelemetry's Prometheus exporter takes too), unless VOXPLANE_METRICS_PORT says otherwise.
run: $(STAMP)
	VOXPLANE_METRICS_PORT=$${VOXPLANE_METRICS_PORT:-9464} $(BIN)/voxplane dev

edge: $(STAMP)
	$(BIN)/voxplane edge run

cluster: $(STAMP)
	$(BIN)/voxplane cluster $(CLUSTER_ARGS)

# The server install for any platform (--universal: arm64 hosts build the image too), every package with
# its hashes: pyproject.toml's dependencies, its `server` extra and its build backend (the Dockerfile builds
# voxplane without build isolation, so nothing unpinned is fetched).
lock: $(STAMP)
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
	  | $(BIN)/uv pip compile pyproject.toml - --extra server --universal --python-version 3.11 --generate-hashes \
	    --custom-compile-command 'make lock' --quiet --output-file requirements.lock

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BUF) lint protos
	$(BUF) breaking protos --against $(CONTRACT_BASELINE)
	cd $(NODE) && npm run --silent build
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

FUZZ_EXAMPLES ?= 1000

fuzz: $(STAMP)
	VOXPLANE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -n 2 -q tests/test_fuzz.py -k reaches_internal

proto: $(STAMP) $(NODE_STAMP)
	$(BIN)/python protos/generate.py

# Rebuilt once, when v1 is released (after the contract's rewrite for v1): from then on v1 may only
# grow compatibly, so the baseline never moves again; a breaking change is a v2 package beside it.
# An image file rather than a git tag, because a fresh clone may carry no tags.
contract-baseline: $(NODE_STAMP)
	$(BUF) build protos --exclude-source-info -o $(CONTRACT_BASELINE)

bench: $(STAMP)
	$(BIN)/python bench/ingress.py

install: $(STAMP) $(NODE_STAMP)

# Reinstalled whenever the project's dependencies change. The dev extra includes the server extra.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The Node client's packages, buf and ts-proto among them, exactly as package-lock.json has them.
# No install scripts: none is needed (buf's binary comes in a platform package of its own).
$(NODE_STAMP): $(NODE)/package.json $(NODE)/package-lock.json
	cd $(NODE) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

clean:
	rm -rf $(VENV) data build *.egg-info $(NODE)/node_modules $(NODE)/dist
