"""Damaged checkpoints (issue 16, item 3): a truncated, missing or corrupted array file of the
latest step is named with its reason, set aside, and the run resumes from the newest intact step;
``evaluate.py`` falls back the same way, or names the damaged step it was asked for; a half-written
step directory left by a crash is ignored and removed."""

import os
import shutil

import numpy as np
import pytest

from bat_jax import build_model
from bat_jax.training import optim
from bat_jax.data import mesh as mesh_lib
from bat_jax.training import state as state_lib
from bat_jax.training.checkpoint import Checkpointer, DamagedCheckpointError
from tests import helpers_train as h
from tests.reliability.conftest import OPTS, STEPS, record


def damage(workdir: str, step: int, kind: str, seed: int = 0) -> str:
  """Damages the largest array file of ``step``: ``flip`` (64 bytes xor 0xFF), ``truncate`` (to
  half) or ``missing`` (deleted). Returns its path."""
  data_dir = os.path.join(workdir, 'checkpoints', str(step), 'state', 'ocdbt.process_0', 'd')
  path = max((os.path.join(data_dir, n) for n in os.listdir(data_dir)), key=os.path.getsize)
  if kind == 'flip':
    data = bytearray(open(path, 'rb').read())
    for i in np.random.default_rng(seed).integers(0, len(data), 64):
      data[i] ^= 0xFF
    with open(path, 'wb') as f:
      f.write(bytes(data))
  elif kind == 'truncate':
    os.truncate(path, os.path.getsize(path) // 2)
  else:
    os.remove(path)
  return path


def _abstract_state():
  config = h.get_config('image')
  model = build_model(config.model)
  tx = optim.make_optimizer(config, optim.learning_rate_schedule(config, 16, STEPS))
  return state_lib.abstract_train_state(model, tx, state_lib.init_input_shape(config.model),
                                        mesh_lib.make_mesh())


@pytest.mark.parametrize('kind', ['flip', 'truncate', 'missing'])
def test_restore_falls_back_to_the_newest_intact_step(tmp_path, reference, kind):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  damage(workdir, 12, kind)
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'))
  abstract = _abstract_state()
  with pytest.raises(DamagedCheckpointError, match='checkpoints/12 is damaged'):
    ckpt.restore_variables(12, abstract)
  step, state, data_state, _ = ckpt.restore_newest_intact(abstract)
  ckpt.close()
  assert step == 8 and int(state.step) == 8 and data_state['next_batch'] == 8
  assert h.checkpoint_steps(workdir) == [4, 8]
  assert os.listdir(os.path.join(workdir, 'checkpoints_damaged')) == ['12']
  record(f'damaged latest checkpoint ({kind})', injected=1, survived=1,
         details='restored step 8, step 12 set aside')


def test_half_written_step_is_ignored_and_removed(tmp_path, reference):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  half = os.path.join(workdir, 'checkpoints', '16.orbax-checkpoint-tmp-1700000000')
  os.makedirs(os.path.join(half, 'state'))
  with open(os.path.join(half, 'state', 'partial'), 'wb') as f:
    f.write(b'\0' * 100)
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'))
  assert ckpt.latest_step() == 12
  ckpt.close()
  assert not os.path.exists(half)
  record('half-written step directory', injected=1, survived=1, details='removed')


def test_train_resumes_past_a_damaged_latest_step_and_evaluate_falls_back(tmp_path, reference,
                                                                          cache_dir):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  damage(workdir, 12, 'truncate')
  env = h.env_for(1, cache_dir)
  evaluated = h.run_ok(h.train_cmd(workdir, script='evaluate.py') + ['--progress=false'], env)
  assert 'checkpoints/12 is damaged' in evaluated.stderr
  assert "'step': 8" in evaluated.stderr
  named = h.run(h.train_cmd(workdir, script='evaluate.py') + ['--step=12', '--progress=false'],
                env)
  assert named.returncode != 0 and 'checkpoints/12 is damaged' in named.stderr
  # The same training command: step 12 is set aside, the run resumes from 8 and ends where the
  # uninterrupted run does.
  restarted = h.run_ok(h.train_cmd(workdir, overrides=OPTS), env)
  assert 'checkpoint step 12 is damaged' in restarted.stderr and 'at step 8' in restarted.stderr
  assert h.checkpoint_steps(workdir) == [4, 8, 12]
  h.assert_same_state(reference, workdir, STEPS)
  assert h.metrics_lines(workdir) == h.metrics_lines(reference)
  record('damaged latest checkpoint (train.py + evaluate.py)', injected=1, survived=1,
         details='evaluate fell back to step 8; train resumed from 8, bit-identical end')
