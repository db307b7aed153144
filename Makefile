# Quick start:  make demo   (set-up, toy data, train, evaluate)
#               make test   (set-up, test suite)
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
DEMO_DIR ?= workdirs/demo
DATA_DIR ?= data/toy_video
JOBS ?= 2

.PHONY: demo test venv clean

$(VENV_STAMP): requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

test: $(VENV_STAMP)
	$(PY) -m pytest -q -n $(JOBS) tests

clean:
	rm -rf workdirs data
