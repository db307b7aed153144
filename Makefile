# Quick start:  make demo   (set-up, toy data, train, evaluate)
#               make test   (set-up, test suite)
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
DEMO_DIR ?= workdirs/demo
DATA_DIR ?= data/toy_video
JOBS ?= 3  # pytest-xdist workers: one more than the 2 CI cores, to fill the time tests wait on subprocesses

.PHONY: demo test venv venv-torch venv-bench-peer clean

# The demo: toy videos (real mp4s in the Kinetics layout), C2D + 3D-BAT trained on this CPU, evaluated.
# Re-running resumes the run in $(DEMO_DIR) (nothing left to do if it finished): `make clean` first
# for a fresh one.
demo: $(VENV_STAMP)
	test -f $(DATA_DIR)/train.csv || $(PY) -m bat_jax.data.toy_video --out $(DATA_DIR)
	$(PY) train.py --config=configs/demo_toy_c2d_3dbat.py --workdir=$(DEMO_DIR) --config.data.root=$(DATA_DIR)
	$(PY) evaluate.py --config=configs/demo_toy_c2d_3dbat.py --workdir=$(DEMO_DIR) --config.data.root=$(DATA_DIR)
	$(PY) evaluate.py --config=configs/demo_toy_c2d_3dbat.py --workdir=$(DEMO_DIR) --config.data.root=$(DATA_DIR) --protocol=30view
	$(PY) -m bat_jax.tools.visualize --config=configs/demo_toy_c2d_3dbat.py --workdir=$(DEMO_DIR) --config.data.root=$(DATA_DIR) --video=$(DATA_DIR)/val/red_up/red_up_val_0000.mp4 --out=$(DEMO_DIR)/attention

$(VENV_STAMP): requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

# torch + torchvision (CPU use of a CUDA build, installed from this machine's disk in ~40 s, 5.5 GB)
# live in their own venv: only the weight-import tests and the PyTorch benchmark peer use them.
TORCH_PY := .venv-torch/bin/python
TORCH_STAMP := .venv-torch/.installed

$(TORCH_STAMP): requirements-torch.txt
	test -x $(TORCH_PY) || python3 -m venv .venv-torch
	$(TORCH_PY) -m pip install -q -r requirements-torch.txt
	touch $(TORCH_STAMP)

venv-torch: $(TORCH_STAMP)

# The PyTorch peer of benchmarks/models.py (torch 2.13.0, CPU build): `make venv-bench-peer`.
PEER_PY := .venv-bench-peer/bin/python
PEER_STAMP := .venv-bench-peer/.installed

$(PEER_STAMP): benchmarks/requirements-peer.txt
	test -x $(PEER_PY) || python3 -m venv .venv-bench-peer
	$(PEER_PY) -m pip install -q -r benchmarks/requirements-peer.txt
	touch $(PEER_STAMP)

venv-bench-peer: $(PEER_STAMP)

test: $(VENV_STAMP) $(TORCH_STAMP)
	BAT_JAX_TORCH_PYTHON=$(CURDIR)/$(TORCH_PY) $(PY) -m pytest -q -n $(JOBS) --dist worksteal --durations=25 tests

clean:
	rm -rf workdirs data
