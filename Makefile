# Two commands for a new machine: `make run` and `make test` (see README).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO ?= var/demo
LISTEN ?= 127.0.0.1:7443

LOCK := requirements.lock
# The container image's subset of it: the runtime dependencies and the build backend, at the same pins (make lock).
IMAGE_LOCK := deploy/requirements-image.lock
# The lock's own tool, pinned by hash; only `make lock` and `make test-latest` use it.
TOOLS := build/lock-tool
LATEST := build/latest

.PHONY: venv run demo test fuzz lint typecheck proto proto-check bench clean lock test-latest proto-lint proto-release image

# Exactly the lock, every file checked against its hash; then the two local packages without
# resolving anything (--no-deps) and built by the locked setuptools (--no-build-isolation).
$(BIN)/custos: $(LOCK) pyproject.toml clients/python/pyproject.toml
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e clients/python -e .
	$(BIN)/pip check
	touch $(BIN)/custos

venv: $(BIN)/custos

## Demo data directory (organisations, synthetic cases) and serve on $(LISTEN).
run: venv
	$(BIN)/python -m gateway.demo $(DEMO) --listen $(LISTEN)

test: venv proto-check proto-lint
	$(BIN)/ruff check .
	$(BIN)/mypy gateway vault policies clients/python/custos_client bench
	$(BIN)/python -m pytest

## The property-based fuzz of every RPC, long: 20,000 examples, at most 10 minutes (the suite runs 60).
fuzz: venv
	FUZZ_EXAMPLES=20000 FUZZ_SECONDS=600 $(BIN)/python -m pytest -q -s tests/test_fuzz.py

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy gateway vault policies clients/python/custos_client bench

## Regenerate the protobuf/gRPC stubs from proto/ (the one command).
proto: venv
	$(BIN)/python tools/genproto.py

## Fails when the checked-in stubs differ from what proto/ generates.
proto-check: venv
	$(BIN)/python tools/genproto.py --check

## buf lint (STANDARD) on proto/, and buf breaking (FILE) against the released custos.v1 in proto/released/.
## buf is the binary of the npm package pinned in tools/buf/package-lock.json, fetched and checked by
## tools/buf.py into build/buf/ (no node needed). docs/api-compatibility.md
proto-lint:
	$(PY) tools/buf.py check

## ONLY when a release is cut (the version in pyproject.toml): record proto/ as that release's custos.v1.
proto-release:
	$(PY) tools/buf.py release

bench: venv
	$(BIN)/python -m bench.run

$(TOOLS)/bin/uv: tools/lock-tool.txt
	rm -rf $(TOOLS)
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --require-hashes -r tools/lock-tool.txt

## Refresh the lock from pyproject.toml (both packages, the dev extra), and the image's subset of it. Pins that still fit are kept, so
## adding a dependency moves nothing else; `make lock UPGRADE=1` moves every pin to the newest release.
lock: $(TOOLS)/bin/uv
	$(TOOLS)/bin/uv pip compile pyproject.toml clients/python/pyproject.toml --extra dev \
	  --generate-hashes --python-version 3.11 $(if $(UPGRADE),--upgrade) --quiet \
	  --custom-compile-command 'make lock' -o $(LOCK)
	$(TOOLS)/bin/uv pip compile pyproject.toml clients/python/pyproject.toml deploy/build-system.in -c $(LOCK) \
	  --generate-hashes --python-version 3.11 --quiet \
	  --custom-compile-command 'make lock' -o $(IMAGE_LOCK)

## The whole suite in a throwaway venv of the newest releases (no lock): drift seen before it breaks a clone.
## What moved is listed first; a stale stub, ruff or mypy finding is printed and the suite still runs.
test-latest:
	rm -rf $(LATEST)
	$(PY) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade pip
	$(LATEST)/bin/pip install -q -e clients/python -e '.[dev]'
	$(PY) tools/drift.py $(LOCK) $(LATEST)/bin/python
	-$(LATEST)/bin/python tools/genproto.py --check
	-$(LATEST)/bin/ruff check .
	-$(LATEST)/bin/mypy gateway vault policies clients/python/custos_client bench
	$(LATEST)/bin/python -m pytest

## The container image (deploy/Containerfile) on a base made here from Debian's packages: needs root, podman
## and debootstrap; not part of `make test` (deploy/README.md, "The image").
image:
	deploy/build-image.sh

clean:
	rm -rf $(VENV) var build *.egg-info
