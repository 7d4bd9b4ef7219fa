# The two Quickstart commands: `make demo` (train + evaluate on built-in data)
# and `make test`. Each sets up .venv from requirements.txt (and the test-only
# requirements-test.txt: stock OIP v2 clients) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo

.PHONY: demo demo-roll test test-slow clean

$(BIN)/.installed: requirements.txt requirements-test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The main job: a CSVAE on 32x32 synthetic faces (CPU-sized), then its edit
# metrics and pictures. EPOCHS=15 halves the preset's budget for a quicker
# look. `make demo-roll` runs the paper's toy experiment.
EPOCHS ?=
demo: $(BIN)/.installed
	$(BIN)/csvae train --dataset synthetic_faces --image-size 32 --num-examples 10000 $(if $(EPOCHS),--epochs $(EPOCHS)) --out $(RUN_DIR)
	$(BIN)/csvae evaluate --run $(RUN_DIR) --edit-examples 300
	@echo "Edit grid: $(RUN_DIR)/edit_grid.png  traversals: $(RUN_DIR)/traversal_*.png  metrics: $(RUN_DIR)/metrics.json"

demo-roll: $(BIN)/.installed
	$(BIN)/csvae train --dataset swiss_roll --out runs/roll
	$(BIN)/csvae evaluate --run runs/roll

# Lint first (seconds), then the tests. pytest exits 5 when it collects no
# test: that is a failure here too, but say so plainly rather than as a bare
# exit code.
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf runs exports .pytest_cache
