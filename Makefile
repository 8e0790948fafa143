# The two commands a fresh machine needs:  `make demo`  and  `make test`  (both do all set-up).
VENV ?= .venv
PB = $(VENV)/bin/plugin-bridge
DEMO = plugin_bridge/data/demo

.PHONY: setup demo test bench
setup:
	@bash scripts/setup.sh

demo: setup
	$(PB) separate $(DEMO)/mix.flac -q "dialogue" -q "music" -q "effects" -o demo_out

test: setup
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(PB) bench --minutes 2
