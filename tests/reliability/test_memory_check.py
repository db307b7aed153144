"""A run that cannot fit (issue 16, item 8): before the first step the compiled train step's memory
analysis is compared with the device's memory; over the limit, ``train.py`` stops with both figures
and the knobs, having run no step."""

import os

from bat_jax.training import faults
from tests import helpers_train as h
from tests.reliability.conftest import OPTS, record


def test_step_over_the_memory_limit_stops_before_the_first_step(tmp_path, cache_dir):
  workdir = str(tmp_path / 'run')
  proc = h.run(h.train_cmd(workdir, overrides=OPTS + ['--config.device_memory_bytes=100000']),
               h.env_for(1, cache_dir))
  assert proc.returncode == 1, proc.stderr[-4000:]
  assert 'cannot fit' in proc.stderr and 'config.device_memory_bytes is 0.00 GiB (100000 bytes)'\
      in proc.stderr
  for knob in ('global_batch_size', 'remat_stages', 'bfloat16', 'more devices'):
    assert knob in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert h.checkpoint_steps(workdir) == []
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  assert not os.path.exists(metrics_path) or not h.metrics_lines(workdir)
  record('train step over the memory limit', injected=1, survived=1,
         details='stopped before step 1 with both figures')


def test_host_memory_is_the_cpu_limit():
  limit, what = faults.device_memory_bytes()
  assert what == 'host RAM' and limit == os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
