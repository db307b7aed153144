"""A dead host (issue 16, item 6): in a 2-process CPU run (2 devices each, gloo collectives),
process 1 is SIGKILLed after update 6; process 0's next collective fails and it exits at once
(status 5) with a message naming the lost process ("process 1 stopped responding": the survivors
answer each other through jax.distributed's key-value store, ``faults.silent_processes``),
instead of waiting at jax's shutdown barrier until the heartbeat timeout (set to 20 s here:
``train.py --heartbeat_timeout_s``). Restarting both processes resumes from step 4 and ends
bit-identical to an uninterrupted 2-process run."""

import subprocess
import time

import pytest

from bat_jax.training import faults
from tests import helpers_train as h
from tests.reliability.conftest import OPTS, STEPS, record

BOUND_S = 60  # process 0 must exit this soon after process 1 died


def _start_pair(workdir, tmp_path, tag, env_1=None):
  """Both processes compile (no shared compilation cache: jax writes it from process 0 only, so
  a cached process 0 would wait at gloo's 30 s rendezvous for a compiling process 1)."""
  port = h.free_port()
  procs, logs = [], []
  for pid in range(2):
    env = h.env_for(2, None, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
                    JAX_NUM_PROCESSES='2', JAX_PROCESS_ID=str(pid),
                    **((env_1 or {}) if pid == 1 else {}))
    logs.append(str(tmp_path / f'{tag}_p{pid}.log'))
    procs.append(h.start(h.train_cmd(workdir, overrides=OPTS + [
        '--heartbeat_timeout_s=20', '--shutdown_timeout_s=20']), env, logs[-1]))
  return procs, logs


def _wait_ok(procs, logs):
  try:
    codes = [p.wait(timeout=300) for p in procs]
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    raise
  assert codes == [0, 0], open(logs[0]).read()[-3000:] + open(logs[1]).read()[-3000:]


def test_killed_process_stops_the_other_promptly_and_both_resume(tmp_path):
  workdir = str(tmp_path / 'run')
  procs, logs = _start_pair(workdir, tmp_path, 'first', {'BAT_JAX_TEST_SIGNAL_AT': '6:step:KILL'})
  try:
    assert procs[1].wait(timeout=300) == -9, open(logs[1]).read()[-3000:]
    died = time.time()
    code = procs[0].wait(timeout=BOUND_S)
    waited = time.time() - died
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    raise
  log0 = open(logs[0]).read()
  assert code == faults.PEER_LOST_EXIT_CODE, log0[-3000:]
  assert 'process 0 of 2 lost contact with another process' in log0
  assert 'process 1 stopped responding' in log0, log0[-3000:]
  assert h.checkpoint_steps(workdir) == [4]

  # Restart both with the same command; compare with an uninterrupted 2-process run (one
  # process sums in another order).
  procs, logs = _start_pair(workdir, tmp_path, 'second')
  _wait_ok(procs, logs)
  assert 'at step 4' in open(logs[0]).read()
  uninterrupted = str(tmp_path / 'uninterrupted')
  _wait_ok(*_start_pair(uninterrupted, tmp_path, 'uninterrupted'))
  h.assert_same_state(uninterrupted, workdir, STEPS)
  assert h.metrics_lines(uninterrupted) == h.metrics_lines(workdir)
  record('dead process of a 2-process run (SIGKILL)', injected=1, survived=1,
         details=f'the other exited {waited:.1f} s later (status 5), naming process 1; the '
                 'restart resumed from step 4, bit-identical to an uninterrupted run')


class _Store:
  """jax.distributed's key-value client, as far as ``silent_processes`` uses it."""

  def __init__(self, others=(), broken=False):
    self.keys = {f'{faults.ANSWER_KEY}/{i}': '1' for i in others}
    self.broken = broken

  def key_value_set(self, key, value, allow_overwrite=False):
    if self.broken:
      raise RuntimeError('UNAVAILABLE: failed to connect to the coordination service')
    assert allow_overwrite or key not in self.keys
    self.keys[key] = value

  def key_value_dir_get(self, directory):
    return [(k, v) for k, v in self.keys.items() if k.startswith(directory + '/')]


@pytest.mark.parametrize('others, broken, silent', [
    ((0, 2, 3), False, [1]),  # process 1 never answers
    ((0, 1, 3), False, []),  # every other process answered
    ((), True, [0]),  # the store (process 0, the coordinator) is gone
])
def test_silent_processes_are_those_that_do_not_answer(others, broken, silent):
  me = 2
  store = _Store([i for i in others if i != me], broken)
  t0 = time.monotonic()
  assert faults.silent_processes(store, me, 4, wait_s=0.3) == silent
  waited = time.monotonic() - t0
  assert waited >= 0.3 if silent and not broken else waited < 0.3
  if not broken:
    assert f'{faults.ANSWER_KEY}/{me}' in store.keys
