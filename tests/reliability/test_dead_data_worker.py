"""A dead data worker (issue 16, item 5, first part): a grain worker process of the video pipeline
is SIGKILLed (as the OOM killer does); the next batch fails with grain's error, which the training
loop turns into ``DataWorkerDied`` (``train.py`` exit status 6) saying that a data worker died and
how to resume."""

import multiprocessing
import os
import signal
import time

import pytest

from bat_jax.data import pipeline
from bat_jax.training import faults
from tests.reliability.conftest import record
from tests.test_video_data import _cfg, _write_coded_set


def test_killed_worker_is_reported_with_how_to_resume(tmp_path):
  root = str(tmp_path / 'coded')
  _write_coded_set(root)
  it = pipeline.make_train_iterator(_cfg(root, num_workers=2), 2, 0, 1, seed=4)
  try:
    next(it)
    workers = [p for p in multiprocessing.active_children() if p.name.startswith('grain-')]
    assert workers
    os.kill(workers[-1].pid, signal.SIGKILL)
    t0 = time.time()
    with pytest.raises(RuntimeError) as e:
      for _ in range(100):
        next(it)
    waited = time.time() - t0
  finally:
    it.close()
  died = faults.data_worker_died(e.value, '/run/checkpoints/8')
  assert died is not None and died.exit_code == faults.DATA_WORKER_EXIT_CODE
  assert 'a data loader worker process died' in str(died) and 'exit code -9' in str(died)
  assert 'resume from /run/checkpoints/8' in str(died)
  assert faults.data_worker_died(RuntimeError('other'), '') is None
  record('data worker SIGKILLed', injected=1, survived=1,
         details=f'reported {waited:.1f} s later; the loop stops with exit status 6')
