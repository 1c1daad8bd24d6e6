# Entry points: `make test`, `make demo` and `make docs`. Each creates .venv if missing and installs pinned deps.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ROOT ?= runs/demo

.PHONY: install test demo docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ray,docs]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
	@echo "the site is in build/site/ (open build/site/index.html)"

demo: $(STAMP)
	$(VENV)/bin/rewind lottery --preset mnist1d_resnet --levels 5 --rewind 0it,200it --replicates 3 \
		--baselines reinit --baselines-at 200it --root $(ROOT) --plot $(ROOT)/figures/lottery
	$(VENV)/bin/rewind instability --preset mnist1d_resnet --at 0it,20it,40it,100it,200it --points 5 \
		--bn-reset --root $(ROOT)
	$(VENV)/bin/rewind report --root $(ROOT)

clean:
	rm -rf $(VENV) runs .pytest_cache
