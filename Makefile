# Entry points for a fresh machine: `make demo` (the main job on the built-in default), `make test` (the fast
# tests: everything but the end-to-end runs marked `slow`) and `make test-all` (every test; what CI runs).
# Both create .venv and install the pinned project into it once; later runs reuse it (a stamp tracks
# pyproject.toml), so they are idempotent and fast when the environment exists.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-all install clean-venv

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	# MTCNN's weights come from the facenet-pytorch wheel on PyPI (that package itself is never installed).
	$(VENV)/bin/compress data fetch-mtcnn
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/compress pipeline --recipe demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
