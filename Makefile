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
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

test: lint browser
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

# speed benchmarks; bench_ef_accuracy.py (two EF models, about an hour), bench_lus_cv.py (a 5-fold lus run, about
# 15 minutes) and bench_real.py (real data from ../shared, about 20 minutes) train for a long time on 2 CPU cores:
# run them on their own
LONG_BENCH := benchmarks/bench_ef_accuracy.py benchmarks/bench_lus_cv.py benchmarks/bench_real.py benchmarks/bench_pretrain.py \
              benchmarks/bench_fold_ensemble.py benchmarks/bench_tta.py
bench: $(STAMP)
	for f in $(filter-out $(LONG_BENCH),$(wildcard benchmarks/bench_*.py)); do \
		$(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(DEMO_OUT)
