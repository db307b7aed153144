"""Checkpoints through ``train.py`` / ``evaluate.py`` subprocesses: SIGKILL + restart is bit-identical
to an uninterrupted run, SIGTERM saves the current step, a different model is refused with the
mismatched names, ``init_from`` loads weights, ``evaluate.py`` restores onto another device count.

Runs are a width-4 ResNet-18 on 32x32 synthetic images (``tests/helpers_train.py:image``), 12
steps of 16 examples; metrics every 3 steps, eval every 5, checkpoints every 4 — so a restart
must also carry the steps since the last metrics line.
"""

import json
import os
import shutil
import signal

import jax
import numpy as np
import pytest

from bat_jax import build_model
from bat_jax.data import mesh as mesh_lib
from bat_jax.training import loop, optim, preemption
from bat_jax.training import state as state_lib
from bat_jax.training.checkpoint import CheckpointMismatchError
from bat_jax.training.transfer import load_init_variables
from tests import helpers_train as h

STEPS = 12
OPTS = [f'--config.num_train_steps={STEPS}', '--config.log_every_steps=3',
        '--config.eval_every_steps=5', '--config.checkpoint_every_steps=4']


@pytest.fixture(scope='module')
def reference(tmp_path_factory, cache_dir):
  """An uninterrupted run."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  h.run_ok(h.train_cmd(workdir, overrides=OPTS), h.env_for(1, cache_dir))
  return workdir


def test_reference_run_layout(reference):
  lines = h.metrics_lines(reference)
  # metrics every 3 steps, eval every 5 (a line of its own), and the last step
  assert [m['step'] for m in lines] == [3, 5, 6, 9, 10, 12]
  assert [m['step'] for m in lines if 'eval_top1' in m] == [5, 10, 12]
  assert all({'train_loss', 'learning_rate', 'train_top1'} <= m.keys() for m in lines)
  assert h.checkpoint_steps(reference) == [4, 8, 12]
  # The data iterator's saved position counts the batches the steps consumed, not those the
  # device prefetch (config.device_prefetch = 2) drew ahead.
  for step in (4, 8, 12):
    with open(os.path.join(reference, 'checkpoints', str(step), 'data',
                           'process_0-of-1.json')) as f:
      assert json.load(f)['next_batch'] == step


def test_sigkill_after_second_checkpoint_then_restart_is_bit_identical(tmp_path, reference,
                                                                       cache_dir):
  workdir = str(tmp_path / 'run')
  cmd = h.train_cmd(workdir, overrides=OPTS)
  env = h.env_for(1, cache_dir, BAT_JAX_TEST_PAUSE_AT_STEP='10')
  log = str(tmp_path / 'first.log')
  proc = h.start(cmd, env, log)
  h.wait_for(os.path.join(workdir, 'paused_at_10'), proc, log)
  # Two checkpoints are on disk; steps 9 and 10 ran (and were logged) after the second.
  assert h.checkpoint_steps(workdir) == [4, 8]
  assert [m['step'] for m in h.metrics_lines(workdir)] == [3, 5, 6, 9, 10]
  proc.send_signal(signal.SIGKILL)
  assert proc.wait(timeout=30) == -signal.SIGKILL

  restarted = h.run_ok(cmd, env)  # the same command
  assert 'resumed from' in restarted.stderr and 'at step 8' in restarted.stderr
  with open(os.path.join(reference, 'metrics.jsonl'), 'rb') as f:
    expected = f.read()
  with open(os.path.join(workdir, 'metrics.jsonl'), 'rb') as f:
    assert f.read() == expected
  assert h.checkpoint_steps(workdir) == [4, 8, 12]
  h.assert_same_state(reference, workdir, STEPS)


def test_sigterm_saves_current_step_and_resumes(tmp_path, reference, cache_dir):
  workdir = str(tmp_path / 'run')
  cmd = h.train_cmd(workdir, overrides=OPTS)
  env = h.env_for(1, cache_dir, BAT_JAX_TEST_PAUSE_AT_STEP='6')
  log = str(tmp_path / 'first.log')
  proc = h.start(cmd, env, log)
  h.wait_for(os.path.join(workdir, 'paused_at_6'), proc, log)
  assert h.checkpoint_steps(workdir) == [4]
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=60) == preemption.PREEMPTED_EXIT_CODE, open(log).read()[-3000:]
  assert h.checkpoint_steps(workdir) == [4, 6]  # the step it was at, not a periodic one
  saved = h.load_params(workdir, 6)
  assert int(saved['step']) == 6
  with open(os.path.join(workdir, 'checkpoints', '6', 'data', 'process_0-of-1.json')) as f:
    assert json.load(f)['next_batch'] == 6
  # Resuming from the preemption checkpoint still ends exactly where the reference does.
  h.run_ok(cmd, env)
  h.assert_same_state(reference, workdir, STEPS)
  assert h.metrics_lines(workdir) == h.metrics_lines(reference)


def test_restoring_a_different_model_names_the_mismatched_parameters(tmp_path, reference,
                                                                     cache_dir):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  before = h.metrics_lines(workdir)
  proc = h.run(h.train_cmd(workdir, overrides=OPTS + ['--config.model.width=8']),
               h.env_for(1, cache_dir))
  assert proc.returncode != 0
  err = proc.stderr
  assert 'different model' in err
  assert 'params/bn1/bias checkpoint (4,) vs model (8,)' in err
  assert 'params/conv1/kernel checkpoint (1, 7, 7, 3, 4) vs model (1, 7, 7, 3, 8)' in err
  assert 'Traceback' not in err
  assert h.metrics_lines(workdir) == before  # nothing was touched
  assert h.checkpoint_steps(workdir) == [4, 8, 12]

  # Another architecture: names missing on either side are listed.
  proc = h.run(h.train_cmd(workdir, overrides=OPTS + ['--config.model.name=resnet34']),
               h.env_for(1, cache_dir))
  assert proc.returncode != 0
  assert 'in the model but not in the checkpoint' in proc.stderr
  assert 'params/res2_block2/conv1/kernel' in proc.stderr


def test_evaluate_restores_onto_another_device_count(tmp_path, reference, cache_dir):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  os.remove(os.path.join(workdir, 'metrics.jsonl'))
  h.run_ok(h.train_cmd(workdir, script='evaluate.py'), h.env_for(2, cache_dir))
  with open(os.path.join(workdir, 'eval_clip.json')) as f:
    result = json.load(f)
  final = h.metrics_lines(reference)[-1]
  assert result['step'] == STEPS and result['num_examples'] == 20
  assert result['top1'] == pytest.approx(final['eval_top1'], abs=1 / 20 + 1e-9)
  assert result['top5'] >= result['top1']
  assert 0.0 <= result['mean_class_accuracy'] <= 1.0
  assert result['loss'] == pytest.approx(final['eval_loss'], rel=1e-4)


def test_init_from_loads_what_fits_and_reports_the_rest(reference):
  """Soft loading (released ``--soft_resume``): the classifier of another class count keeps its
  fresh values and is reported with its shapes; every other array equals the checkpoint's."""
  cfg = h.get_config('image')
  cfg.model.num_classes = 5  # a new classifier
  model = build_model(cfg.model)
  mesh = mesh_lib.make_mesh()
  tx = optim.make_optimizer(cfg, 0.1)
  shape = state_lib.init_input_shape(cfg.model)
  abstract = state_lib.abstract_train_state(model, tx, shape, mesh)
  fresh = state_lib.create_train_state(model, tx, 1, shape, mesh)

  params, batch_stats, report = load_init_variables(reference, abstract, fresh)
  assert report['reinitialised'] == {
      'params/fc/bias': 'shape: checkpoint [4] vs model [5] (classifier: 4 classes in the '
                        'checkpoint, 5 in the model (model.num_classes))',
      'params/fc/kernel': 'shape: checkpoint [32, 4] vs model [32, 5] (classifier: 4 classes in '
                          'the checkpoint, 5 in the model (model.num_classes))'}
  assert report['unused'] == ['params/fc/bias', 'params/fc/kernel']
  assert report['inflated'] == {} and report['counts']['reinitialised'] == 2
  saved = h.load_params(reference, STEPS)
  got, want, init = h.flat(params), h.flat(saved['params']), h.flat(fresh.params)
  assert len(report['loaded']) == len(got) - 2 + len(h.flat(batch_stats))
  for name in got:
    if name.startswith("['fc']"):
      np.testing.assert_array_equal(got[name], np.asarray(init[name]))
    else:
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  got_bs, want_bs = h.flat(batch_stats), h.flat(saved['batch_stats'])
  assert got_bs.keys() == want_bs.keys()
  for name in got_bs:
    np.testing.assert_array_equal(got_bs[name], want_bs[name])

  # init_from_ignore keeps names at init although they fit.
  params, _, report = load_init_variables(reference, abstract, fresh, ignore=('^params/conv1/',))
  assert report['reinitialised']['params/conv1/kernel'] == 'named by config.init_from_ignore'
  np.testing.assert_array_equal(np.asarray(params['conv1']['kernel']),
                                np.asarray(fresh.params['conv1']['kernel']))

  other = h.get_config('video')  # nothing of a ResNet-18 fits a C2D-ResNet-50 ...
  other.model.width, other.model.num_classes = 3, 7
  model = build_model(other.model)
  abstract = state_lib.abstract_train_state(model, tx, state_lib.init_input_shape(other.model),
                                            mesh)
  with pytest.raises(CheckpointMismatchError, match='no array of the checkpoint fits'):
    load_init_variables(reference, abstract, abstract)


def test_init_from_in_the_loop(tmp_path, reference):
  """``config.init_from`` starts a fresh run from another run's weights (lr 0: they stay)."""
  loop.mark_flags_parsed()
  cfg = h.get_config('image')
  cfg.init_from = os.path.join(reference, 'checkpoints')  # its latest step
  cfg.base_learning_rate = 0.0
  cfg.num_train_steps, cfg.eval_every_steps, cfg.checkpoint_every_steps = 1, 0, 0
  loop.train_and_evaluate(cfg, str(tmp_path))
  with open(tmp_path / 'init_report.json') as f:
    report = json.load(f)
  assert report['reinitialised'] == {} and report['unused'] == []
  assert report['init_from'] == os.path.join(reference, 'checkpoints', str(STEPS))
  got, want = h.load_params(str(tmp_path), 1), h.load_params(reference, STEPS)
  assert int(got['step']) == 1
  for name, value in h.flat(want['params']).items():
    np.testing.assert_array_equal(h.flat(got['params'])[name], value, err_msg=name)
  assert jax.tree.structure(got['params']) == jax.tree.structure(want['params'])
