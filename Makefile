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

DATASETS := ave llp vggss avs-s4 avs-ms3 avss music-avqa

# Stage one on the built-in synthetic mini-benchmark, with random-weight encoders (a fresh
# machine has no pretrained weights): synthesise all seven datasets in their official layouts,
# extract each into its store, then show one. Training and reporting join when the trainer lands.
demo: setup
	$(AVU) synth --out $(DEMO)/raw
	for d in $(DATASETS); do \
		$(AVU) extract --dataset $$d --root $(DEMO)/raw/$$d --out $(DEMO)/features/$$d.zarr \
			--random-weights clip_model=avu-tiny-clip patch_grid=4 || exit 1; \
	done
	$(AVU) info $(DEMO)/features/llp.zarr

bench: setup
	$(VENV)/bin/python benchmarks/bench_extract.py

clean-demo:
	rm -rf $(DEMO)
