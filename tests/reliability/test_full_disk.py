"""A full disk (issue 16, item 4): with ``RLIMIT_FSIZE`` set in the training process (writes past
the limit fail with EFBIG, as on a full disk), failed saves are logged, training goes on, each
interval retries, and after ``config.max_failed_saves`` the run stops (exit 4) naming the last
saved checkpoint, which still restores: the same command then ends where an uninterrupted run
does."""

import os

from bat_jax.training import faults
from tests import helpers_train as h
from tests.reliability.conftest import OPTS, STEPS, record


def test_failed_saves_keep_training_then_stop_and_the_previous_checkpoint_restores(
    tmp_path, reference, cache_dir):
  workdir = str(tmp_path / 'run')
  cmd = h.train_cmd(workdir, overrides=OPTS + ['--config.checkpoint_every_steps=2',
                                               '--config.max_failed_saves=3'])
  # Before 0-based step 5 (after the save of step 4 is committed): files over 20 kB fail.
  proc = h.run(cmd, h.env_for(1, cache_dir, BAT_JAX_TEST_FSIZE_AT_STEP='5:20000'))
  assert proc.returncode == faults.SAVE_FAILED_EXIT_CODE, proc.stderr[-4000:]
  for step, n in ((6, 1), (8, 2), (10, 3)):
    assert f'checkpoint save of step {step} failed ({n} in a row)' in proc.stderr
  last_good = os.path.join(workdir, 'checkpoints', '4')
  assert '3 consecutive checkpoint saves failed' in proc.stderr and last_good in proc.stderr
  assert h.checkpoint_steps(workdir) == [2, 4]
  # Trained on after each failure; an async save's failure is seen when the next one starts (the
  # save of step 10 fails in the background, the run stops at step 12).
  assert max(m['step'] for m in h.metrics_lines(workdir)) == 12
  restarted = h.run_ok(cmd, h.env_for(1, cache_dir))
  assert 'at step 4' in restarted.stderr
  h.assert_same_state(reference, workdir, STEPS)
  assert h.metrics_lines(workdir) == h.metrics_lines(reference)
  record('full disk (EFBIG on checkpoint writes)', injected=3, survived=3,
         details='3 failed saves, exit 4, resumed from step 4, bit-identical end')
