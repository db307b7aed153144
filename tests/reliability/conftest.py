"""Fixtures of the fault-injection suite (docs/reliability.md): one uninterrupted reference run
(the runs of ``tests/test_checkpoint.py``: 12 steps, metrics every 3, eval every 5, checkpoints
every 4); the compilation cache is the suite's (tests/conftest.py).

``BAT_JAX_RELIABILITY_LONG=1`` runs the soak sizes (outside CI); ``record`` appends a test's
figures (faults injected, survived) to the JSON-lines file ``BAT_JAX_RELIABILITY_REPORT`` names,
which ``benchmarks/reliability.py`` turns into the table of docs/reliability.md."""

import json
import os

import pytest

from tests import helpers_train as h

LONG = os.environ.get('BAT_JAX_RELIABILITY_LONG') == '1'
STEPS = 12
OPTS = [f'--config.num_train_steps={STEPS}', '--config.log_every_steps=3',
        '--config.eval_every_steps=5', '--config.checkpoint_every_steps=4']


@pytest.fixture(scope='session')
def reference(tmp_path_factory, cache_dir):
  """An uninterrupted run without faults."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  h.run_ok(h.train_cmd(workdir, overrides=OPTS), h.env_for(1, cache_dir))
  return workdir


def record(fault: str, *, injected: int, survived: int, details: str = '') -> None:
  """Appends a fault's figures to ``$BAT_JAX_RELIABILITY_REPORT`` (when set). Called after the
  test's asserts: a failed test records nothing."""
  path = os.environ.get('BAT_JAX_RELIABILITY_REPORT')
  if path:
    with open(path, 'a') as f:
      f.write(json.dumps({'fault': fault, 'injected': injected, 'survived': survived,
                          'details': details}) + '\n')
