"""A dead data worker (issue 16, item 5): a grain worker process is SIGKILLed (as the OOM killer
does). In-process, the next batches fail with grain's error, which ``faults.data_worker_died``
turns into ``DataWorkerDied``; end to end, ``train.py`` stops with exit status 6 and a message
saying that a data worker died and how to resume, and the same command resumes and ends
bit-identical to an uninterrupted run."""

import multiprocessing
import os
import signal
import time

import pytest

from bat_jax.data import pipeline
from bat_jax.training import faults
from tests import helpers_train as h
from tests.reliability.conftest import OPTS, STEPS, record
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


def _spawned_children(pid: int) -> list[int]:
  """Processes whose parent is ``pid`` and that multiprocessing spawned (grain's workers; not
  its resource tracker), read from /proc."""
  found = []
  for name in os.listdir('/proc'):
    if not name.isdigit():
      continue
    try:
      with open(f'/proc/{name}/stat') as f:
        parent = int(f.read().rsplit(')', 1)[1].split()[1])
      with open(f'/proc/{name}/cmdline', 'rb') as f:
        cmdline = f.read()
    except (OSError, IndexError, ValueError):  # exited meanwhile
      continue
    if parent == pid and b'spawn_main' in cmdline:
      found.append(int(name))
  return found


def test_worker_killed_mid_run_stops_train_and_the_same_command_resumes_exactly(
    tmp_path, reference, cache_dir):
  """``train.py`` on the synthetic set with one grain worker process, paused after update 6 (a
  checkpoint of step 4 on disk): the test SIGKILLs the worker, lets the run go on, and checks
  the exit and the resume (the batches do not depend on the worker count, so the uninterrupted
  reference ran without workers; checkpoints every 4 steps of 12)."""
  workdir = str(tmp_path / 'run')
  cmd = h.train_cmd(workdir, overrides=OPTS + ['--config.data.num_workers=1'])
  env = h.env_for(1, cache_dir, BAT_JAX_TEST_PAUSE_AT_STEP='6')
  log = str(tmp_path / 'first.log')
  proc = h.start(cmd, env, log)
  h.wait_for(os.path.join(workdir, 'paused_at_6'), proc, log, timeout=300)
  workers = _spawned_children(proc.pid)
  assert len(workers) == 1, workers  # the train iterator's worker (evaluation's have exited)
  os.kill(workers[0], signal.SIGKILL)
  killed = time.time()
  open(os.path.join(workdir, 'resume_at_6'), 'w').close()
  try:
    code = proc.wait(timeout=120)
  except Exception:
    proc.kill()
    raise
  waited = time.time() - killed
  out = open(log).read()
  assert code == faults.DATA_WORKER_EXIT_CODE, out[-4000:]
  assert 'run stopped: a data loader worker process died' in out, out[-4000:]
  # Batches already prefetched from the worker carry the run a few steps on (past the save at
  # step 8 in the runs seen), then the next batch fails; the message names the newest checkpoint.
  saved = h.checkpoint_steps(workdir)
  assert saved[0] == 4 and saved[-1] < STEPS, saved
  assert f'run the same command to resume from {workdir}/checkpoints/{saved[-1]} ' in out

  restarted = h.run_ok(cmd, env, timeout=300)  # the same command (the pause marker exists)
  assert f'at step {saved[-1]}' in restarted.stderr
  h.assert_same_state(reference, workdir, STEPS)
  with open(os.path.join(reference, 'metrics.jsonl'), 'rb') as a, open(
      os.path.join(workdir, 'metrics.jsonl'), 'rb') as b:
    assert a.read() == b.read()
  record('data worker SIGKILLed during train.py', injected=1, survived=1,
         details=f'train.py exited (status 6) {waited:.1f} s later; the same command resumed '
                 f'from step {saved[-1]}, bit-identical to an uninterrupted run')
