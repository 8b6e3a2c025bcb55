# SLMRec Lab. `make app` and `make test` each set everything up from the project's own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
# The CPU build of torch is small and fast to install; a machine that already has a torch
# (a CUDA build, say) keeps it, because the venv sees the system site-packages.
TORCH_CPU ?= torch==2.13.0

.PHONY: setup app test bench fetch browser clean

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_CPU)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.ready

fetch: setup
	$(VENV)/bin/slmrec fetch

# Debian's chromium for the real-browser test (Playwright's own browser download cannot work here).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

app: fetch
	$(VENV)/bin/slmrec app --port $(PORT)

test: setup browser
	$(PY) -m pytest -q

bench: setup
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache
