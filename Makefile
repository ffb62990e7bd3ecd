# The two commands: `make demo` (the main job on the built-in default) and `make test`.
# Both set up everything first (ffmpeg, .venv, avu); see scripts/setup.sh.
VENV ?= .venv
AVU  := $(VENV)/bin/avu
DEMO ?= demo

.PHONY: setup demo test bench clean-demo

setup:
	@bash scripts/setup.sh

test: setup
	$(VENV)/bin/python -m pytest -q

# The main job on the built-in synthetic mini-benchmark, end to end: synthesise all ten datasets
# (every adapter of pipeline/datasets) in their official layouts, extract each (random-weight
# encoders: a fresh machine has no pretrained weights), train all ten tasks jointly, evaluate on
# the test splits, print the report.
demo: setup
	$(AVU) demo --out $(DEMO)

bench: setup
	$(VENV)/bin/python benchmarks/bench_extract.py

clean-demo:
	rm -rf $(DEMO)
