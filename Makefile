# Two commands for users: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sonokit-installed
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast lint install browser bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[onnx,app,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sonokit demo --out $(DEMO_OUT)

# The web app's end-to-end test drives Debian's Chromium (no downloaded browser).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  { echo "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"; exit 1; }

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint browser
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

# speed benchmarks; bench_ef_accuracy.py trains two EF models (about an hour on 2 CPU cores) and bench_real.py
# trains on real data from ../shared (about 20 minutes): run those on their own
bench: $(STAMP)
	for f in $(filter-out benchmarks/bench_ef_accuracy.py benchmarks/bench_real.py,$(wildcard benchmarks/bench_*.py)); do \
		$(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(DEMO_OUT)
