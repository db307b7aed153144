"""Non-finite steps (issue 16, item 1): the step skips the update, the loop counts it and stops with
exit status 3 naming the last good checkpoint; resuming with sane inputs continues from it."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from bat_jax import build_model
from bat_jax.training import faults, optim
from bat_jax.data import mesh as mesh_lib
from bat_jax.training import state as state_lib
from bat_jax.training import steps as steps_lib
from tests import helpers_train as h
from tests.reliability.conftest import OPTS, record


def test_nonfinite_step_applies_no_update():
  config = h.get_config('image')
  model = build_model(config.model)
  tx = optim.make_optimizer(config, optim.learning_rate_schedule(config, 16, 12))
  mesh = mesh_lib.make_mesh()
  state = state_lib.create_train_state(model, tx, 0, state_lib.init_input_shape(config.model),
                                       mesh)
  step = steps_lib.make_train_step(model, tx, mesh)
  rng = np.random.default_rng(0)
  good = {'image': rng.normal(size=(16, 32, 32, 3)).astype(np.float32),
          'label': rng.integers(0, 4, 16).astype(np.int32)}
  before = jax.device_get(state.as_dict())
  state, metrics = step(state, mesh_lib.global_batch(faults.inject(0, good), mesh))
  assert bool(metrics['finite'])
  after_good = jax.device_get(state.as_dict())
  assert not np.array_equal(before['params']['fc']['kernel'], after_good['params']['fc']['kernel'])
  bad = {**good, 'image': np.full_like(good['image'], np.nan)}
  state, metrics = step(state, mesh_lib.global_batch(bad, mesh))
  assert not bool(metrics['finite']) and not np.isfinite(float(metrics['loss']))
  after_bad = jax.device_get(state.as_dict())
  assert int(after_bad['step']) == 2  # the batch was consumed
  for part in ('params', 'batch_stats', 'opt_state'):
    same = jax.tree.map(np.array_equal, after_good[part], after_bad[part])
    assert all(jax.tree.leaves(same)), part
  assert bool(steps_lib.all_finite(state.params))
  assert not bool(steps_lib.all_finite({'a': jnp.ones(2), 'b': jnp.array([1.0, jnp.inf])}))


def test_nan_batches_stop_the_run_and_resume_continues_from_the_last_good_checkpoint(
    tmp_path, reference, cache_dir):
  workdir = str(tmp_path / 'run')
  cmd = h.train_cmd(workdir, overrides=OPTS + ['--config.max_nonfinite_steps=3'])
  # 0-based steps 5, 6, 7 (updates 6, 7, 8) get NaN inputs: stops after update 8, before saving it.
  proc = h.run(cmd, h.env_for(1, cache_dir, BAT_JAX_TEST_NAN_FROM_STEP='5'))
  assert proc.returncode == faults.NONFINITE_EXIT_CODE, proc.stderr[-4000:]
  assert '3 consecutive non-finite steps (the last: step 8' in proc.stderr
  assert os.path.join(workdir, 'checkpoints', '4') in proc.stderr  # the last good checkpoint
  for s in (6, 7, 8):
    assert f'step {s}: non-finite loss' in proc.stderr
  assert h.checkpoint_steps(workdir) == [4]
  lines = {m['step']: m for m in h.metrics_lines(workdir)}
  assert lines[6]['nonfinite_steps'] == 1 and 'train_loss' not in lines[6]
  assert all('nonfinite_steps' not in lines[s] for s in (3, 5))
  for step in h.checkpoint_steps(workdir):
    assert all(np.all(np.isfinite(v)) for v in h.flat(h.load_params(workdir, step)).values()
               if np.issubdtype(v.dtype, np.floating))
  # The fault is gone (sane inputs): the same command resumes from step 4 and ends exactly where
  # the uninterrupted run does.
  restarted = h.run_ok(cmd, h.env_for(1, cache_dir))
  assert 'at step 4' in restarted.stderr
  h.assert_same_state(reference, workdir, 12)
  assert h.metrics_lines(workdir) == h.metrics_lines(reference)
  record('non-finite steps (NaN batches)', injected=3, survived=3,
         details='3 NaN steps skipped, exit 3, resumed from step 4')
