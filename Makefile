# Two entry points: `make test` and `make demo`. Both create .venv if missing and install pinned deps.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ROOT ?= runs/demo

.PHONY: install test demo clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

demo: $(STAMP)
	$(VENV)/bin/rewind train --preset mnist1d_mlp --root $(ROOT)
	$(VENV)/bin/rewind train --preset mnist1d_conv --root $(ROOT)
	$(VENV)/bin/rewind lottery --preset mnist1d_mlp --levels 8 --rewind 0it,50it,200it --prune-fraction 0.3 \
		--baselines reinit,random-prune --root $(ROOT) --plot $(ROOT)/figures/lottery

clean:
	rm -rf $(VENV) runs .pytest_cache
