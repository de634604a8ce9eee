# Entry points for a fresh machine: `make demo` (the main job on the built-in default), `make test` (the fast
# tests: everything but the end-to-end runs marked `slow`) and `make test-all` (every test; what CI runs).
# Both create .venv and install the pinned project into it once; later runs reuse it (a stamp tracks
# pyproject.toml), so they are idempotent and fast when the environment exists.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-all install clean-venv

# uv installs the same pinned set as pip, about 8x faster (a fresh 2-core machine: 16 s against pip's 142 s).
# uv does not read pip's configuration, so pip's configured find-links and constraint files are passed on
# (tools/uv_args.py); if uv fails for any reason, pip installs instead.
UV := uv==0.13.9

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet $(UV) \
	  && $(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python $$($(VENV)/bin/python tools/uv_args.py) -e ".[test]" \
	  || $(VENV)/bin/python -m pip install --quiet -e ".[test]"
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
