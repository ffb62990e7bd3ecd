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

# Stage one on generated time-coded clips with random-weight encoders (no weights on a fresh
# machine): extract them in parallel, then show what the store holds.
demo: setup
	$(VENV)/bin/python -m pipeline.timecode --out $(DEMO)/videos --clips 8
	$(AVU) extract --videos $(DEMO)/videos --out $(DEMO)/features.zarr --random-weights \
		clip_model=avu-tiny-clip patch_grid=4
	$(AVU) info $(DEMO)/features.zarr

bench: setup
	$(VENV)/bin/python benchmarks/bench_extract.py

clean-demo:
	rm -rf $(DEMO)
