# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/mnas arch info mnasnet-a1
	$(BIN)/mnas train mnasnet-a1 --data digits --epochs 5 --batch-size 64 --out runs/demo-train

# pytest exits 5 when it collects no tests; that is not a failure of the suite
test: $(BIN)/.installed
	$(BIN)/python -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

clean:
	rm -rf $(VENV) runs .pytest_cache
