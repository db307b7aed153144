"""A dead host (issue 16, item 6): in a 2-process CPU run (2 devices each, gloo collectives),
process 1 is SIGKILLed after update 6; process 0's next collective fails and it exits at once
(status 5) with a message saying another process was lost, instead of waiting at jax's shutdown
barrier until the heartbeat timeout (set to 20 s here: ``train.py --heartbeat_timeout_s``).
``BAT_JAX_RELIABILITY_LONG=1`` also restarts both processes: they resume from step 4 and end
bit-identical to an uninterrupted 2-process run."""

import subprocess
import time

from bat_jax.training import faults
from tests import helpers_train as h
from tests.reliability.conftest import LONG, OPTS, STEPS, record

BOUND_S = 60  # process 0 must exit this soon after process 1 died


def _start_pair(workdir, tmp_path, tag, env_1=None):
  port = h.free_port()
  procs, logs = [], []
  for pid in range(2):
    env = h.env_for(2, None, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2',
                    JAX_PROCESS_ID=str(pid), **((env_1 or {}) if pid == 1 else {}))
    logs.append(str(tmp_path / f'{tag}_p{pid}.log'))
    procs.append(h.start(h.train_cmd(workdir, overrides=OPTS + [
        '--heartbeat_timeout_s=20', '--shutdown_timeout_s=20']), env, logs[-1]))
  return procs, logs


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
  assert h.checkpoint_steps(workdir) == [4]

  resumed = ''
  if LONG:  # restart both; compare with an uninterrupted 2-process run (1 process sums otherwise)
    procs, logs = _start_pair(workdir, tmp_path, 'second')
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, 0], open(logs[0]).read()[-3000:]
    assert 'at step 4' in open(logs[0]).read()
    uninterrupted = str(tmp_path / 'uninterrupted')
    procs, logs = _start_pair(uninterrupted, tmp_path, 'uninterrupted')
    assert [p.wait(timeout=300) for p in procs] == [0, 0], open(logs[0]).read()[-3000:]
    h.assert_same_state(uninterrupted, workdir, STEPS)
    assert h.metrics_lines(uninterrupted) == h.metrics_lines(workdir)
    resumed = '; the restart resumed from step 4, bit-identical to an uninterrupted run'
  record('dead process of a 2-process run (SIGKILL)', injected=1, survived=1,
         details=f'the other exited {waited:.1f} s later (status 5){resumed}')
