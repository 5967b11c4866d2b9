# Two commands for a new machine: `make run` and `make test` (see README).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO ?= var/demo
LISTEN ?= 127.0.0.1:7443

.PHONY: venv run demo test fuzz lint typecheck proto proto-check bench clean

$(BIN)/custos: pyproject.toml clients/python/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e clients/python -e '.[dev]'
	touch $(BIN)/custos

venv: $(BIN)/custos

## Demo data directory (organisations, synthetic cases) and serve on $(LISTEN).
run: venv
	$(BIN)/python -m gateway.demo $(DEMO) --listen $(LISTEN)

test: venv proto-check
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

bench: venv
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var build *.egg-info
